package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// BenchmarkServeBlob measures a 16 MiB body over loopback TCP: fasthttp
// sending a bare *os.File (the sendfile baseline), the server's disk-hit
// stream (fileStream, which must keep up with it), the same file copied
// through user space, a streamed reader from memory (like a fill whose
// bytes are in the page cache), and a memory hit.
func BenchmarkServeBlob(b *testing.B) {
	const size = 16 << 20
	data := testData(size)
	p := filepath.Join(b.TempDir(), "blob")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
	dg := oci.FromBytes(data)
	quiet := slog.New(slog.DiscardHandler)

	fromFile := func(ctx context.Context, req *oci.Request) (answer, error) {
		return answer{digest: dg, size: size, source: tier.SourceDisk, hasBody: true, content: &fakeContent{data: data, path: p}}, nil
	}
	// The same file, hidden behind a plain reader: copied, not sendfile.
	fromFileCopied := func(ctx context.Context, req *oci.Request) (answer, error) {
		return answer{digest: dg, size: size, source: tier.SourceDisk, hasBody: true, content: &fakeContent{data: data, reader: func(off, n int64) io.Reader {
			f, err := os.Open(p)
			if err != nil {
				panic(err)
			}
			return struct{ io.ReadCloser }{f}
		}}}, nil
	}
	fromReader := func(ctx context.Context, req *oci.Request) (answer, error) {
		return answer{digest: dg, size: size, source: tier.SourceFillJoined, hasBody: true, content: &fakeContent{data: data}}, nil
	}
	fromMemory := func(ctx context.Context, req *oci.Request) (answer, error) {
		return answer{digest: dg, size: size, source: tier.SourceMemory, hasBody: true, content: &fakeContent{mem: data}}, nil
	}
	bare := func(ctx *fasthttp.RequestCtx) {
		f, err := os.Open(p)
		if err != nil {
			ctx.Error(err.Error(), 500)
			return
		}
		ctx.Response.SetBodyStream(f, size)
	}
	for _, bc := range []struct {
		name    string
		handler fasthttp.RequestHandler
	}{
		{"bare-os.File", bare},
		{"fileStream", newServer(Config{Logger: quiet}, fromFile).handle},
		{"fileCopied", newServer(Config{Logger: quiet}, fromFileCopied).handle},
		{"readerStream", newServer(Config{Logger: quiet}, fromReader).handle},
		{"memory", newServer(Config{Logger: quiet}, fromMemory).handle},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &fasthttp.Server{Handler: bc.handler, NoDefaultContentType: true}
			served := make(chan error, 1)
			// Stopped by the Shutdown below.
			go func() { served <- srv.Serve(ln) }()
			defer func() {
				_ = srv.Shutdown()
				<-served
			}()
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "http://" + ln.Addr().String() + "/v2/app/blobs/" + string(dg)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(url)
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
