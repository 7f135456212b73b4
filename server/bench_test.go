package server

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// BenchmarkServeBlob measures a 16 MiB body over loopback TCP. Two
// baselines are fasthttp alone: sending a bare *os.File (sendfile), and the
// same file hidden behind a plain reader (copied through user space). The
// rest are the server over a real cache: a disk hit (its file sent by
// growingStream, which must keep pace with the bare file), a cold fill
// streamed as it is written and verified (growingStream: sendfile from the
// pending file on Linux, which can open it again, reads elsewhere; the
// object is new on every iteration, and its last byte waits for the
// commit), an uncached stream (readerStream over the origin's body, hashed
// on the way), and a memory hit. The cases keep the names of earlier runs
// (bench/README.md).
func BenchmarkServeBlob(b *testing.B) {
	const size = 16 << 20
	data := testData(size)
	p := filepath.Join(b.TempDir(), "blob")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	origin := origintest.New()
	dg := origin.Add(data, "")
	served := func(c Cache) fasthttp.RequestHandler { return New(Config{Logger: quiet}, c).handle }
	bare := func(ctx *fasthttp.RequestCtx) {
		f, err := os.Open(p)
		if err != nil {
			ctx.Error(err.Error(), 500)
			return
		}
		ctx.Response.SetBodyStream(f, size)
	}
	copied := func(ctx *fasthttp.RequestCtx) {
		f, err := os.Open(p)
		if err != nil {
			ctx.Error(err.Error(), 500)
			return
		}
		ctx.Response.SetBodyStream(struct{ io.ReadCloser }{f}, size)
	}
	fills := newTestCache(b, origin, func(cfg *cache.Config) { cfg.MemoryBytes, cfg.DiskBytes = 0, 4*size })
	for _, bc := range []struct {
		name    string
		handler fasthttp.RequestHandler
		// next, if set, makes the object of the next iteration, untimed,
		// and returns its digest.
		next func(b *testing.B) oci.Digest
	}{
		{name: "bare-os.File", handler: bare},
		{name: "bare-copied", handler: copied},
		{name: "disk-fileStream", handler: served(warmCache(b, origin, func(cfg *cache.Config) { cfg.MemoryBytes = 0 }, blobRequest(dg)))},
		{name: "fill-readerStream", handler: served(fills), next: newObject(origin, data)},
		{name: "uncached-readerStream", handler: served(newTestCache(b, origin, func(cfg *cache.Config) { cfg.DiskBytes = 1 }))},
		{name: "memory", handler: served(warmCache(b, origin, func(cfg *cache.Config) {
			cfg.MemoryBytes, cfg.MemoryMaxObject = 2*size, size
		}, blobRequest(dg)))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &fasthttp.Server{Handler: bc.handler, NoDefaultContentType: true}
			stopped := make(chan error, 1)
			// Stopped by the Shutdown below.
			go func() { stopped <- srv.Serve(ln) }()
			defer func() {
				_ = srv.Shutdown()
				<-stopped
			}()
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			base := "http://" + ln.Addr().String() + "/v2/app/blobs/"
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				want := dg
				if bc.next != nil {
					b.StopTimer()
					want = bc.next(b)
					b.StartTimer()
				}
				resp, err := client.Get(base + string(want))
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}

// newObject returns a maker of objects of data's size that no cache holds
// yet: data with a counter in its first bytes, held by origin in place of
// the one made before.
func newObject(origin *origintest.Origin, data []byte) func(b *testing.B) oci.Digest {
	var (
		i    uint64
		prev oci.Digest
	)
	return func(b *testing.B) oci.Digest {
		i++
		d := append([]byte(nil), data...)
		binary.BigEndian.PutUint64(d, i)
		if prev != "" {
			origin.Remove("", prev)
		}
		prev = origin.Add(d, "")
		return prev
	}
}

// BenchmarkHandleManifestHit measures the handler alone on a warm manifest
// from the memory tier, the hit path: what cacheyd adds to fasthttp's own
// work for the commonest request, allocations included. The access line is
// measured three ways: not written (level above Info), written through
// slog's text handler, and written by the server itself (Config.AccessLog),
// both into a buffer as cacheyd's log sink takes them.
//
//	go test -run XXX -bench HandleManifestHit -benchmem ./server
func BenchmarkHandleManifestHit(b *testing.B) {
	data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	o := origintest.New()
	dg := o.Add(data, "application/vnd.oci.image.manifest.v1+json")
	req := &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
	c := warmCache(b, o, nil, req)
	sink := lineWriter{discard: true}
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"no-log", Config{Logger: slog.New(slog.DiscardHandler)}},
		{"slog-text", Config{Logger: slog.New(slog.NewTextHandler(&sink, nil))}},
		{"access-log", Config{Logger: slog.New(slog.NewTextHandler(&sink, nil)), AccessLog: &sink}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(bc.cfg, c)
			var ctx fasthttp.RequestCtx
			var r fasthttp.Request
			r.SetRequestURI("/v2/library/app/manifests/" + string(dg) + "?ns=docker.io")
			r.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234}
			b.ReportAllocs()
			for b.Loop() {
				ctx.Init(&r, addr, nil)
				s.handle(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatal(ctx.Response.StatusCode())
				}
			}
		})
	}
}
