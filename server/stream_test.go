package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBrokenStreamAbortsConnection: once headers are out, a body that fails
// or ends early must break the response (the client sees an error), never
// end it cleanly with fewer bytes.
func TestBrokenStreamAbortsConnection(t *testing.T) {
	// The cut comes before the fill has made the progress for which a
	// broken body is resumed (1/16 of the object, at least 64 KiB), and the
	// test caches make no other retry: the fill fails at the cut.
	const size, cut = 256 << 10, 40 << 10
	data := testData(size)
	// cutFill is a cache whose fills of data break after cut bytes with
	// cutErr (a clean end for io.EOF), for the two requests below.
	cutFill := func(t *testing.T, cutErr error, unknownSize bool) (*testCache, oci.Digest) {
		o := origintest.New()
		dg := o.Add(data, "")
		var up origintest.Fetcher = origintest.CutWith(o, cut, cutErr).Times(2)
		if unknownSize {
			up = origintest.UnknownSize(up)
		}
		return newTestCache(t, up, nil), dg
	}
	tests := []struct {
		name  string
		size  int64 // announced; -1 for chunked
		serve func(t *testing.T) (*testCache, oci.Digest)
	}{
		{"read error", size, func(t *testing.T) (*testCache, oci.Digest) {
			return cutFill(t, errors.New("upstream died"), false)
		}},
		{"early EOF", size, func(t *testing.T) (*testCache, oci.Digest) {
			return cutFill(t, io.EOF, false)
		}},
		{"read error, chunked", -1, func(t *testing.T) (*testCache, oci.Digest) {
			return cutFill(t, errors.New("upstream died"), true)
		}},
		{"file shorter than its size", size, func(t *testing.T) (*testCache, oci.Digest) {
			// A disk hit whose file was cut short beneath the cache.
			o := origintest.New()
			dg := o.Add(data, "")
			c := warmCache(t, o, func(cfg *cache.Config) { cfg.MemoryBytes = 0 }, blobRequest(dg))
			truncate(t, c.dir, dg, cut)
			return c, dg
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dg := tt.serve(t)
			ts := startServer(t, Config{}, c)
			target := "/v2/app/blobs/" + string(dg)

			// net/http: reading the body must fail.
			resp, body, err := ts.do(t, "GET", target, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if err == nil {
				t.Fatalf("read %d of %d bytes without an error: a short body looked whole", len(body), size)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("client error: %v", err)
			}
			line := ts.logs.wait(t, 1)[0]
			if line["err"] == nil {
				t.Errorf("access line has no err: %v", line)
			}
			if got, ok := line["bytes"].(int64); !ok || got >= size {
				t.Errorf("logged bytes = %v, want fewer than %d", line["bytes"], size)
			}

			// A raw connection: the server closes it after fewer bytes than
			// Content-Length.
			conn, err := ts.ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target)
			raw, err := io.ReadAll(conn) // returns at the server's close
			if err != nil {
				t.Fatalf("raw read: %v", err)
			}
			head, rest, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
			if !ok {
				t.Fatalf("no header end in %q", raw[:min(len(raw), 200)])
			}
			if tt.size >= 0 {
				if !bytes.Contains(head, []byte("Content-Length: "+strconv.Itoa(size))) {
					t.Errorf("headers lack Content-Length %d: %q", size, head)
				}
				if len(rest) >= size {
					t.Errorf("raw body %d bytes, want fewer than %d", len(rest), size)
				}
			} else if bytes.HasSuffix(rest, []byte("0\r\n\r\n")) {
				t.Errorf("chunked body ends with the last chunk: looks whole")
			}
			ts.logs.wait(t, 2)
			c.closeReleased(t)
		})
	}
}

// truncate cuts the file holding dg under dir to n bytes.
func truncate(t *testing.T, dir string, dg oci.Digest, n int64) {
	t.Helper()
	found := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != dg.Hex() {
			return err
		}
		found++
		return os.Truncate(path, n)
	})
	if err != nil || found != 1 {
		t.Fatalf("truncating %s: %d files, %v", dg.Short(), found, err)
	}
}

// TestStreamContextEndsWithResponse: the context the cache is asked with
// lives while the body streams and is cancelled once it is done. A fill
// reader waits on it: were it cancelled early, the body would break.
func TestStreamContextEndsWithResponse(t *testing.T) {
	const size = 64 << 10
	c, dg, gate := gatedBlob(t, size)
	spy := &spyCache{Cache: c}
	ts := startServer(t, Config{}, spy)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://x/v2/app/blobs/"+string(dg), nil)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, size/2)); err != nil {
		t.Fatalf("first half: %v", err)
	}
	ctxs := spy.contexts()
	if len(ctxs) != 1 || ctxs[0].Err() != nil {
		t.Fatalf("%d requests asked; mid-stream the context is done: %v", len(ctxs), ctxs[0].Err())
	}
	close(gate) // the reader, waiting on that context, gets the rest
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != size/2 {
		t.Fatalf("second half: %d bytes, %v", len(rest), err)
	}
	ts.logs.wait(t, 1)
	if ctxs[0].Err() == nil {
		t.Error("request context not cancelled after the response")
	}
}

// TestDiskHitReachesSendfile serves a whole disk hit over loopback TCP and
// checks that every body byte went through the connection's ReadFrom with
// the file itself, both with and without the per-IP limit's wrapper.
func TestDiskHitReachesSendfile(t *testing.T) {
	const size = 3<<20 + 12345 // several pieces and a partial one
	data := testData(size)
	for _, perIP := range []int{0, 4} {
		t.Run("MaxConnsPerIP="+strconv.Itoa(perIP), func(t *testing.T) {
			o := origintest.New()
			dg := o.Add(data, "")
			c := warmCache(t, o, func(cfg *cache.Config) { cfg.MemoryBytes = 0 }, blobRequest(dg))
			var spy *spyListener
			ts := startTCP(t, Config{MaxConnsPerIP: perIP}, c, func(ln net.Listener) net.Listener {
				spy = &spyListener{Listener: ln}
				return spy
			})
			resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(dg), nil)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET: %v, status %d, %d bytes", err, resp.StatusCode, len(body))
			}
			if line := ts.logs.wait(t, 1)[0]; line["source"] != "disk" {
				t.Errorf("source %v, want disk", line["source"])
			}
			c.released(t)
			if fileBytes, _ := spy.counts(); fileBytes != size {
				t.Errorf("%d bytes went to TCPConn.ReadFrom as a file, want all %d", fileBytes, size)
			}
		})
	}
}

// TestStreamRenewsWriteDeadline: a body that takes longer than
// WriteTimeout to stream, but never stalls that long, is not cut off.
// fasthttp's WriteTimeout alone is one deadline for the whole response, so
// without renewal the write after the first pause would fail. The pauses
// are the subject of the test (a deadline is wall-clock time), not a way
// to synchronise goroutines.
func TestStreamRenewsWriteDeadline(t *testing.T) {
	const timeout = 200 * time.Millisecond
	const piece, count = 64 << 10, 4
	p := newPacedBlob(t, piece*count, false)
	ts := startTCP(t, Config{WriteTimeout: timeout}, p, nil)
	ctx := t.Context()
	// Feeds the fill's upstream, pausing 1.5×WriteTimeout between pieces;
	// stops after count pieces, or when the test ends.
	go func() {
		for i := range count {
			if i > 0 {
				<-time.After(3 * timeout / 2)
			}
			select {
			case p.pace <- piece:
			case <-ctx.Done():
				return
			}
		}
	}()
	resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(p.digest), nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, p.data) {
		t.Fatalf("GET: %v, status %d, %d of %d bytes", err, resp.StatusCode, len(body), piece*count)
	}
}

// zeros reads n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), z.n))
	clear(p[:k])
	z.n -= int64(k)
	return k, nil
}

// TestStalledClientIsDropped: a client that stops reading is dropped after
// WriteTimeout, and its request ends (body closed, context cancelled). The
// stream is an uncached one (the disk budget cannot take the object), from
// an origin of zeros that holds nothing in memory.
func TestStalledClientIsDropped(t *testing.T) {
	const size = 256 << 20 // far more than loopback socket buffers hold
	var bodies origintest.Bodies
	o := origintest.Func(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
		resp := &oci.Response{Digest: req.Reference.Digest, Size: size}
		if req.Method == http.MethodGet {
			resp.Body = bodies.Track(io.NopCloser(&zeros{n: size}))
		}
		return resp, nil
	})
	spy := &spyCache{Cache: newTestCache(t, o, func(cfg *cache.Config) { cfg.DiskBytes = 1 << 20 })}
	ts := startTCP(t, Config{WriteTimeout: 200 * time.Millisecond}, spy, nil)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v2/app/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n", digestA)
	if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Fatal(err)
	}
	// Read nothing more: the server's writes block, then time out.
	line := ts.logs.wait(t, 1)[0]
	if line["err"] == nil || line["source"] != cache.SourceUncached.String() {
		t.Errorf("stalled %v stream ended without an error: %v", line["source"], line)
	}
	if got, _ := line["bytes"].(int64); got >= size {
		t.Errorf("logged bytes = %d, want fewer than %d", got, size)
	}
	if n := bodies.Open(); n != 0 {
		t.Errorf("%d origin bodies left open", n)
	}
	spy.waitDone(t, 1)
}

// TestStreamBytesReachClientAtOnce: a stream other than a file (here a
// fill whose upstream is slow) sends its headers before its first byte
// exists, and every piece as it comes, rather than when fasthttp's 4 KiB
// buffer fills: with a known size and chunked, over plain TCP and TLS. A
// fill holds back the byte that may be its last until it is verified, so
// each piece but the last arrives short of that one byte.
func TestStreamBytesReachClientAtOnce(t *testing.T) {
	const piece, pieces = 100, 3
	cert, pool := selfSigned(t)
	for _, tt := range []struct {
		name    string
		chunked bool
		tls     bool
	}{
		{"known size", false, false},
		{"chunked", true, false},
		{"known size over TLS", false, true},
		{"chunked over TLS", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPacedBlob(t, piece*pieces, tt.chunked)
			cfg := Config{}
			if tt.tls {
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ts := startTCP(t, cfg, p, nil)
			c := dialRaw(t, ts.addr)
			if tt.tls {
				c = deadlined(t, tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
			}
			sendRaw(t, c, "GET /v2/app/blobs/"+string(p.digest)+" HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no headers while the fill has sent nothing: %v", err)
			}
			wantLength := int64(piece * pieces)
			if tt.chunked {
				wantLength = -1
			}
			if resp.StatusCode != 200 || resp.ContentLength != wantLength {
				t.Fatalf("status %d, Content-Length %d; want 200, %d", resp.StatusCode, resp.ContentLength, wantLength)
			}
			got := 0
			for i := range pieces - 1 {
				p.send(t, piece)
				want := (i+1)*piece - 1
				buf := make([]byte, want-got)
				if _, err := io.ReadFull(resp.Body, buf); err != nil || !bytes.Equal(buf, p.data[got:want]) {
					t.Fatalf("piece %d did not arrive while the fill held the rest: %v", i, err)
				}
				got = want
			}
			p.send(t, piece)
			if rest, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(rest, p.data[got:]) {
				t.Errorf("after the last piece: %d bytes, %v; want %d", len(rest), err, len(p.data)-got)
			}
		})
	}
}

// TestClientClosingAfterItsWindowIsNoError: a client that reads part of a
// body and closes its connection (containerd's parallel chunks do) is
// counted and logged as such, without an error.
func TestClientClosingAfterItsWindowIsNoError(t *testing.T) {
	data := testData(16 << 20)
	o, req := holding(data, "")
	c := warmCache(t, o, func(cfg *cache.Config) { cfg.MemoryBytes = 0 }, req)
	m := metrics.New(nil)
	ts := startTCP(t, Config{Metrics: m}, c, nil)
	conn := dialRaw(t, ts.addr)
	sendRaw(t, conn, "GET /v2/app/blobs/"+string(oci.FromBytes(data))+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.ReadFull(conn, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset, as a client that hangs up mid-body sends
	}
	conn.Close()
	line := ts.logs.wait(t, 1)[0]
	if line["client_closed"] != true || line["err"] != nil {
		t.Errorf("access line client_closed %v err %v, want closed and no error", line["client_closed"], line["err"])
	}
	if n := testutil.ToFloat64(m.ClientClosed.WithLabelValues("blob")); n != 1 {
		t.Errorf("client_closed{blob} = %v, want 1", n)
	}
}
