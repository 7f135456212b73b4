package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// TestBrokenStreamAbortsConnection: once headers are out, a body that fails
// or ends early must break the response (the client sees an error), never
// end it cleanly with fewer bytes.
func TestBrokenStreamAbortsConnection(t *testing.T) {
	const size = 256 << 10
	data := testData(size)
	tests := []struct {
		name string
		size int64 // announced; -1 for chunked
		make func(t *testing.T) *fakeContent
	}{
		{"read error", size, func(*testing.T) *fakeContent {
			return &fakeContent{data: data, reader: func(off, n int64) io.Reader {
				return &failingReader{data: data[:100<<10], err: errors.New("fill sha256:abc: digest mismatch")}
			}}
		}},
		{"early EOF", size, func(*testing.T) *fakeContent {
			return &fakeContent{data: data, reader: func(off, n int64) io.Reader {
				return bytes.NewReader(data[:100<<10])
			}}
		}},
		{"read error, chunked", -1, func(*testing.T) *fakeContent {
			return &fakeContent{data: data, reader: func(off, n int64) io.Reader {
				return &failingReader{data: data[:100<<10], err: errors.New("upstream died")}
			}}
		}},
		{"file shorter than its size", size, func(t *testing.T) *fakeContent {
			p := filepath.Join(t.TempDir(), "short")
			if err := os.WriteFile(p, data[:100<<10], 0o600); err != nil {
				t.Fatal(err)
			}
			return &fakeContent{data: data, path: p}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.make(t)
			fc := &fakeCache{answer: func(req *oci.Request) (answer, error) {
				return answer{digest: oci.FromBytes(data), size: tt.size, source: tier.SourceFillNew, hasBody: true, content: c}, nil
			}}
			ts := startServer(t, Config{}, fc.get)
			target := "/v2/app/blobs/" + string(oci.FromBytes(data))

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
			c.checkClosed(t)
		})
	}
}

// TestStreamContextEndsWithResponse: the context the cache is asked with
// lives while the body streams and is cancelled once it is done.
func TestStreamContextEndsWithResponse(t *testing.T) {
	data := testData(64 << 10)
	var (
		mu      sync.Mutex // guards ctxs and duringRead
		ctxs    []context.Context
		live    []bool // ctx.Err() == nil seen from inside a body read
		content = &fakeContent{data: data}
	)
	content.reader = func(off, n int64) io.Reader {
		mu.Lock()
		ctx := ctxs[len(ctxs)-1]
		mu.Unlock()
		return readerFunc(func(p []byte) (int, error) {
			mu.Lock()
			live = append(live, ctx.Err() == nil)
			mu.Unlock()
			if len(data) == 0 {
				return 0, io.EOF
			}
			k := copy(p, data)
			data = data[k:]
			return k, nil
		})
	}
	get := func(ctx context.Context, req *oci.Request) (answer, error) {
		mu.Lock()
		ctxs = append(ctxs, ctx)
		mu.Unlock()
		return answer{digest: digestA, size: int64(len(data)), source: tier.SourceFillJoined, hasBody: true, content: content}, nil
	}
	ts := startServer(t, Config{}, get)
	resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(digestA), nil)
	if err != nil || resp.StatusCode != 200 || len(body) != 64<<10 {
		t.Fatalf("GET: %v, status %d, %d bytes", err, resp.StatusCode, len(body))
	}
	ts.logs.wait(t, 1)
	mu.Lock()
	defer mu.Unlock()
	for i, ok := range live {
		if !ok {
			t.Errorf("read %d saw the request context already done", i)
		}
	}
	if len(ctxs) != 1 || ctxs[0].Err() == nil {
		t.Errorf("request context not cancelled after the response (%d contexts)", len(ctxs))
	}
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// spyConn records what reaches the TCP connection's ReadFrom: an
// *io.LimitedReader around an *os.File is what net.TCPConn sends with
// sendfile(2).
type spyConn struct {
	*net.TCPConn
	mu        *sync.Mutex // guards fileBytes, other
	fileBytes *int64
	other     *int
}

func (c *spyConn) ReadFrom(r io.Reader) (int64, error) {
	isFile := false
	if lr, ok := r.(*io.LimitedReader); ok {
		_, isFile = lr.R.(*os.File)
	}
	n, err := c.TCPConn.ReadFrom(r)
	c.mu.Lock()
	if isFile {
		*c.fileBytes += n
	} else {
		*c.other++
	}
	c.mu.Unlock()
	return n, err
}

type spyListener struct {
	net.Listener
	mu        sync.Mutex // guards fileBytes, other
	fileBytes int64
	other     int
}

func (l *spyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &spyConn{TCPConn: c.(*net.TCPConn), mu: &l.mu, fileBytes: &l.fileBytes, other: &l.other}, nil
}

func (l *spyListener) counts() (int64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fileBytes, l.other
}

// TestDiskHitReachesSendfile serves a whole file over loopback TCP and
// checks that every body byte went through the connection's ReadFrom with
// the file itself, both with and without the per-IP limit's wrapper.
func TestDiskHitReachesSendfile(t *testing.T) {
	const size = 3<<20 + 12345 // several pieces and a partial one
	data := testData(size)
	for _, perIP := range []int{0, 4} {
		t.Run("MaxConnsPerIP="+strconv.Itoa(perIP), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "blob")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			c := &fakeContent{data: data, path: p}
			fc := contentCache(data, c, tier.SourceDisk, oci.BlobMediaType)
			var spy *spyListener
			ts := startTCP(t, Config{MaxConnsPerIP: perIP}, fc.get, func(ln net.Listener) net.Listener {
				spy = &spyListener{Listener: ln}
				return spy
			})
			resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(oci.FromBytes(data)), nil)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET: %v, status %d, %d bytes", err, resp.StatusCode, len(body))
			}
			ts.logs.wait(t, 1)
			c.checkClosed(t)
			if fileBytes, _ := spy.counts(); fileBytes != size {
				t.Errorf("%d bytes went to TCPConn.ReadFrom as a file, want all %d", fileBytes, size)
			}
		})
	}
}

// startTCP serves s on a loopback TCP listener (wrapped by wrap, if set).
func startTCP(t *testing.T, cfg Config, get getFunc, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	logs := newLogSink()
	cfg.Logger = slog.New(logs)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = tcp
	if wrap != nil {
		ln = wrap(tcp)
	}
	var d net.Dialer
	return serveOn(t, newServer(cfg, get), ln, logs, func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", tcp.Addr().String())
	})
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
	pieces := make(chan []byte)
	c := &fakeContent{reader: func(off, n int64) io.Reader {
		var cur []byte
		return readerFunc(func(p []byte) (int, error) {
			for len(cur) == 0 {
				b, ok := <-pieces
				if !ok {
					return 0, io.EOF
				}
				cur = b
			}
			k := copy(p, cur)
			cur = cur[k:]
			return k, nil
		})
	}}
	fc := &fakeCache{answer: func(req *oci.Request) (answer, error) {
		return answer{digest: digestA, size: piece * count, source: tier.SourceFillNew, hasBody: true, content: c}, nil
	}}
	ts := startTCP(t, Config{WriteTimeout: timeout}, fc.get, nil)
	// Feeds the body, pausing 1.5×WriteTimeout between pieces; stops after
	// count pieces.
	go func() {
		defer close(pieces)
		for i := range count {
			if i > 0 {
				<-time.After(3 * timeout / 2)
			}
			pieces <- testData(piece)
		}
	}()
	resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(digestA), nil)
	if err != nil || resp.StatusCode != 200 || len(body) != piece*count {
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
// WriteTimeout, and its request ends (reader closed, context cancelled).
func TestStalledClientIsDropped(t *testing.T) {
	const size = 256 << 20 // far more than loopback socket buffers hold
	c := &fakeContent{reader: func(off, n int64) io.Reader { return &zeros{n: n} }}
	fc := &fakeCache{answer: func(req *oci.Request) (answer, error) {
		return answer{digest: digestA, size: size, source: tier.SourceFillNew, hasBody: true, content: c}, nil
	}}
	ts := startTCP(t, Config{WriteTimeout: 200 * time.Millisecond}, fc.get, nil)
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
	if line["err"] == nil {
		t.Errorf("stalled stream ended without an error: %v", line)
	}
	if got, _ := line["bytes"].(int64); got >= size {
		t.Errorf("logged bytes = %d, want fewer than %d", got, size)
	}
	c.checkClosed(t)
}

// TestStreamBytesReachClientAtOnce: a stream other than a file (here a
// fill whose upstream is slow) sends its headers before its first byte
// exists, and every piece as it comes, rather than when fasthttp's 4 KiB
// buffer fills: with a known size and chunked, over plain TCP and TLS.
func TestStreamBytesReachClientAtOnce(t *testing.T) {
	const piece, pieces = 100, 3
	cert, pool := selfSigned(t)
	for _, tt := range []struct {
		name string
		size int64
		tls  bool
	}{
		{"known size", piece * pieces, false},
		{"chunked", -1, false},
		{"known size over TLS", piece * pieces, true},
		{"chunked over TLS", -1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHeldFill(tt.size)
			cfg := Config{}
			if tt.tls {
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ts := startTCPServer(t, cfg, h.get)
			c := dialRaw(t, ts.addr)
			if tt.tls {
				c = deadlined(t, tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
			}
			sendRaw(t, c, "GET /v2/app/blobs/"+string(digestA)+" HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no headers while the fill has sent nothing: %v", err)
			}
			if resp.StatusCode != 200 || resp.ContentLength != tt.size {
				t.Fatalf("status %d, Content-Length %d; want 200, %d", resp.StatusCode, resp.ContentLength, tt.size)
			}
			for i := range pieces {
				data := testData(piece)
				h.feed <- data
				got := make([]byte, piece)
				if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("piece %d did not arrive while the fill held the rest: %v", i, err)
				}
			}
			close(h.feed)
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Errorf("after the last piece: %d bytes, %v", len(rest), err)
			}
		})
	}
}
