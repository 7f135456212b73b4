package s3_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silent is a loopback address that accepts connections and never answers.
func silent(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	// Stops when the cleanup closes the listener.
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

// TestAFailingStore: a store that is down, refuses the keys or does not
// answer fails each read with tier.ErrFailed and its cause, within the
// timeout, counted by kind; an upload fails and is counted.
func TestAFailingStore(t *testing.T) {
	srv := s3test.Start(t)
	for _, tt := range []struct {
		name string
		mod  func(*s3.Config)
		kind string
	}{
		{"down", func(c *s3.Config) { c.Endpoint = "http://" + closedPort(t) }, "unreachable"},
		{"wrong keys", func(c *s3.Config) { c.SecretKey = "not-the-secret" }, "denied"},
		{"hanging", func(c *s3.Config) { c.Endpoint = "http://" + silent(t) }, "timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, srv, func(c *s3.Config) {
				c.Timeout = 300 * time.Millisecond
				c.Transport = nil // the store's own, with its header timeout
				tt.mod(c)
			})
			e := h.files.add(randomBytes(t, 1000), "")
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, err := h.store.Fetch(t.Context(), blobReq(method, e.Digest))
				if err == nil {
					if resp.Body != nil {
						resp.Body.Close()
					}
					t.Fatalf("%s answered", method)
				}
				if !errors.Is(err, tier.ErrFailed) {
					t.Errorf("%s: %v, want an error wrapping tier.ErrFailed", method, err)
				}
			}
			if got := counted(h.m.S3.ReadErrors.WithLabelValues(tt.kind)); got != 2 {
				t.Errorf("read errors of kind %s: %v, want 2", tt.kind, got)
			}
			if got := counted(h.m.S3.Reads.WithLabelValues("error")); got != 2 {
				t.Errorf("reads counted as errors: %v, want 2", got)
			}
			if r := h.upload(t, e); r != "failed" {
				t.Errorf("upload: %s, want failed", r)
			}
			if st := h.store.Status(); st.Failed != 1 || st.LastError == "" {
				t.Errorf("Status: %+v, want 1 failed upload and the last error", st)
			}
		})
	}
}

// TestAStalledBody: a body that sends nothing for the timeout fails with
// tier.ErrFailed, counted as a timeout, after the bytes it sent.
func TestAStalledBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"0123"`)
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	h := newHarness(t, nil, func(c *s3.Config) {
		c.Endpoint, c.Timeout, c.Transport = srv.URL, 300*time.Millisecond, nil
	})
	resp, err := h.store.Fetch(t.Context(), blobReq(http.MethodGet, oci.FromBytes([]byte("stalls"))))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, tier.ErrFailed) || len(got) != 10 {
		t.Errorf("body: %d bytes, %v; want 10 and an error wrapping tier.ErrFailed", len(got), err)
	}
	if n := counted(h.m.S3.ReadErrors.WithLabelValues("timeout")); n != 1 {
		t.Errorf("read errors of kind timeout: %v, want 1", n)
	}
}
