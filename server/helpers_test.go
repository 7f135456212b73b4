package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// waitLimit bounds every wait of a test on something the server does; it is
// a failure deadline, never a way to let time pass.
const waitLimit = 10 * time.Second

// logSink is a slog.Handler that keeps the access lines, so that a test can
// wait for a request to have ended (its stream closed) before looking at
// what it left behind.
type logSink struct {
	mu      sync.Mutex // guards records and changed
	records []slog.Record
	changed chan struct{} // closed and replaced on every record
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logSink) WithGroup(string) slog.Handler            { return l }

func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "request" {
		return nil
	}
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// wait returns the access lines once there are at least n of them.
func (l *logSink) wait(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		l.mu.Lock()
		got, changed := len(l.records), l.changed
		if got >= n {
			out := make([]map[string]any, 0, got)
			for _, r := range l.records {
				m := map[string]any{"level": r.Level.String()}
				r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
				out = append(out, m)
			}
			l.mu.Unlock()
			return out
		}
		l.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waited %v for %d access lines, have %d", waitLimit, n, got)
		}
	}
}

// fakeContent is content of a fake answer. Readers it hands out are
// counted, so that a test can prove each was closed.
type fakeContent struct {
	mem  []byte // a memory hit
	data []byte // streamed content
	// reader, if set, makes the body reader (for failures part-way).
	reader func(off, n int64) io.Reader
	// path, if set, is a file holding the content: a whole read returns the
	// *os.File itself, as a disk hit does.
	path string

	mu     sync.Mutex // guards opened, closed, objClosed, files
	files  []*os.File // every *os.File handed out
	opened int
	closed int
	// objClosed counts Close calls on the object itself.
	objClosed int
}

func (c *fakeContent) Bytes() []byte { return c.mem }

func (c *fakeContent) Body(off, n int64) (io.ReadCloser, error) {
	if n < 0 {
		n = int64(len(c.data)) - off
	}
	if c.path != "" && off == 0 && n == int64(len(c.data)) {
		f, err := os.Open(c.path)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.files = append(c.files, f)
		c.mu.Unlock()
		return f, nil
	}
	var r io.Reader
	if c.reader != nil {
		r = c.reader(off, n)
	} else {
		r = bytes.NewReader(c.data[off : off+n])
	}
	c.mu.Lock()
	c.opened++
	c.mu.Unlock()
	return &countedReader{Reader: r, c: c}, nil
}

func (c *fakeContent) Close() error {
	c.mu.Lock()
	c.objClosed++
	c.mu.Unlock()
	return nil
}

// checkClosed fails t unless every reader and file handed out was closed.
func (c *fakeContent) checkClosed(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened != c.closed {
		t.Errorf("%d body readers opened, %d closed", c.opened, c.closed)
	}
	for _, f := range c.files {
		if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("file %s left open", f.Name())
		}
	}
}

type countedReader struct {
	io.Reader
	c    *fakeContent
	once sync.Once
}

func (r *countedReader) Close() error {
	r.once.Do(func() {
		r.c.mu.Lock()
		r.c.closed++
		r.c.mu.Unlock()
	})
	return nil
}

// failingReader yields n bytes of data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// fakeCache answers from a fixed table and records every request.
type fakeCache struct {
	mu   sync.Mutex // guards reqs
	reqs []oci.Request
	// answer makes the answer to a request.
	answer func(req *oci.Request) (answer, error)
}

func (f *fakeCache) get(_ context.Context, req *oci.Request) (answer, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.mu.Unlock()
	if f.answer == nil {
		return answer{}, oci.ErrManifestUnknown(req.Reference.String())
	}
	return f.answer(req)
}

func (f *fakeCache) reset() {
	f.mu.Lock()
	f.reqs = nil
	f.mu.Unlock()
}

func (f *fakeCache) requests() []oci.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]oci.Request(nil), f.reqs...)
}

// testServer is a Server on an in-memory listener with a net/http client.
type testServer struct {
	*Server
	logs   *logSink
	client *http.Client
	ln     *fasthttputil.InmemoryListener // for in-memory servers
	addr   string                         // for TCP servers
}

func startServer(t *testing.T, cfg Config, get getFunc) *testServer {
	t.Helper()
	logs := newLogSink()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logs)
	}
	s := newServer(cfg, get)
	ln := fasthttputil.NewInmemoryListener()
	return serveOn(t, s, ln, logs, func(context.Context, string, string) (net.Conn, error) { return ln.Dial() })
}

func serveOn(t *testing.T, s *Server, ln net.Listener, logs *logSink, dial func(context.Context, string, string) (net.Conn, error)) *testServer {
	t.Helper()
	served := make(chan error, 1)
	// Stopped by the Shutdown in Cleanup.
	go func() { served <- s.Serve(ln) }()
	tr := &http.Transport{DialContext: dial, DisableCompression: true}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	ts := &testServer{Server: s, logs: logs, client: &http.Client{Transport: tr}}
	if il, ok := ln.(*fasthttputil.InmemoryListener); ok {
		ts.ln = il
	} else {
		ts.addr = ln.Addr().String()
	}
	return ts
}

// do sends a request to the test server and reads the whole response.
func (ts *testServer) do(t *testing.T, method, target string, header http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://cacheyd.test"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// tierAnswer adapts a real tier.Cache for tests that go through it.
func tierAnswer(c *tier.Cache) getFunc { return fromCache(c) }

var errBoom = errors.New("boom: /var/lib/cacheyd/secret path")

const (
	digestA = oci.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	digestB = oci.Digest("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
)
