package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// testHeaderTimeout is short, so that the tests below end soon; nothing
// asserts how long anything took.
const testHeaderTimeout = 200 * time.Millisecond

// drippingRegistry answers /v2/ at once and every other request with
// headers sent a byte at a time, 10ms apart, that never end.
func drippingRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Stops when the cleanup closes the listener.
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			// Stops when a write fails or the test ends.
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/v2/" {
						io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
						continue
					}
					drip(conn, "HTTP/1.1 200 OK\r\nX-Drip: ", stop)
					return
				}
			})
		}
	})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// drip writes start and then one more byte of a header value every 10ms
// until a write fails or stop is closed.
func drip(w io.Writer, start string, stop <-chan struct{}) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		b := []byte{'a'}
		if i < len(start) {
			b = []byte{start[i]}
		}
		if _, err := w.Write(b); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// hangingHandler answers /v2/ and never answers anything else, until the
// request's connection goes or the test ends.
func hangingHandler(t *testing.T) http.HandlerFunc {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}
}

// TestHangingUpstreamTimesOut: an upstream that accepts and never
// answers, answers only the ping, drips its headers, redirects to or names
// a token realm that never answers, fails a Fetch (a blob GET, a tag's
// HEAD) within ResponseHeaderTimeout with an error wrapping both
// oci.ErrUpstreamUnavailable and oci.ErrUpstreamTimeout, never a bare
// context error.
func TestHangingUpstreamTimesOut(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) Config
	}{
		{"accepts and never answers", func(t *testing.T) Config {
			s := registrytest.NewSilentListener(t)
			return Config{RegistryURLs: map[string]string{testRegistry: "http://" + s.Addr()}}
		}},
		{"answers the ping only", func(t *testing.T) Config {
			srv := httptest.NewServer(hangingHandler(t))
			t.Cleanup(srv.Close)
			return Config{RegistryURLs: map[string]string{testRegistry: srv.URL}}
		}},
		{"drips headers", func(t *testing.T) Config {
			return Config{RegistryURLs: map[string]string{testRegistry: "http://" + drippingRegistry(t)}}
		}},
		{"redirects to a silent host", func(t *testing.T) Config {
			s := registrytest.NewSilentListener(t)
			port := redirectingRegistry(t, "http://"+s.Addr()+"/blob")
			return Config{RegistryURLs: map[string]string{testRegistry: "http://127.0.0.1:" + port}, AllowedHosts: []string{s.Addr()}}
		}},
		{"names a silent token realm", func(t *testing.T) Config {
			// By name: go-containerregistry refuses loopback IP realms.
			realm := "localhost:" + registrytest.NewSilentListener(t).Port()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+realm+`/token",service="s"`)
				w.WriteHeader(http.StatusUnauthorized)
			}))
			t.Cleanup(srv.Close)
			return Config{RegistryURLs: map[string]string{testRegistry: srv.URL}, AllowRealms: []string{realm}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.setup(t)
			cfg.ResponseHeaderTimeout = testHeaderTimeout
			c := newClient(t, cfg)
			// The test's own bound: far beyond the header timeout, so
			// that reaching it shows as DeadlineExceeded, not a pass.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			for _, req := range []*oci.Request{blobRequest("GET", content), manifestRequest("HEAD", "v1")} {
				resp, err := c.Fetch(ctx, req)
				if err == nil {
					readBody(t, resp)
				}
				if !errors.Is(err, oci.ErrUpstreamTimeout) || !errors.Is(err, oci.ErrUpstreamUnavailable) {
					t.Errorf("%s %s: %v, want ErrUpstreamTimeout and ErrUpstreamUnavailable", req.Method, req.Kind, err)
				}
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					t.Errorf("%s %s: %v wraps a context error", req.Method, req.Kind, err)
				}
				if _, ok := oci.AsError(err); ok {
					t.Errorf("%s %s: %v is a registry's answer", req.Method, req.Kind, err)
				}
			}
		})
	}
}

// TestCallerCancellationIsNoTimeout: a caller that gives up before the
// header deadline gets its own cancellation back, not a timeout.
func TestCallerCancellationIsNoTimeout(t *testing.T) {
	s := registrytest.NewSilentListener(t)
	c := newClient(t, Config{
		RegistryURLs:          map[string]string{testRegistry: "http://" + s.Addr()},
		ResponseHeaderTimeout: time.Hour,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	// Stops when Fetch returns, after cancel.
	go func() {
		_, err := c.Fetch(ctx, blobRequest("GET", content))
		done <- err
	}()
	if err := s.WaitAccepted(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || errors.Is(err, oci.ErrUpstreamTimeout) {
		t.Errorf("Fetch = %v, want context.Canceled and no timeout", err)
	}
}

// pipeListener is an in-memory listener for a synctest bubble: its
// connections are net.Pipe ends, whose blocking the bubble can see.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wait holds a handler for d, or until its request goes.
func wait(r *http.Request, d time.Duration) {
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
}

// TestHeaderDeadlineCoversHeadersOnly: once the headers are in, the body
// may take longer than ResponseHeaderTimeout; headers that take longer do
// not, nor do redirect hops that each answer in time but together do
// not. On a fake clock, so that "longer" is exact.
func TestHeaderDeadlineCoversHeadersOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = time.Second
		body := strings.Repeat("x", 4096)
		release := make(chan struct{})
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/v2/":
			case strings.Contains(r.URL.Path, "/slow-headers"):
				wait(r, 2*timeout)
			case strings.Contains(r.URL.Path, "/hops"), r.URL.Path == "/hop":
				// Each hop answers within the timeout, the two together
				// do not.
				wait(r, timeout*6/10)
				if r.URL.Path != "/hop" {
					http.Redirect(w, r, "/hop", http.StatusTemporaryRedirect)
				}
			default:
				io.WriteString(w, body[:100])
				w.(http.Flusher).Flush()
				<-release
				io.WriteString(w, body[100:])
			}
		})}
		ln := newPipeListener()
		served := make(chan struct{})
		// Stops when srv.Close closes the listener.
		go func() { srv.Serve(ln); close(served) }()
		tr := &http.Transport{DialContext: ln.dial}
		var releaseOnce sync.Once
		// Inside the bubble, before it waits for its goroutines to end.
		t.Cleanup(func() {
			releaseOnce.Do(func() { close(release) })
			srv.Close()
			tr.CloseIdleConnections()
			<-served
		})
		c := newClient(t, Config{
			RegistryURLs: map[string]string{testRegistry: "http://registry.test"}, Transport: tr,
			ResponseHeaderTimeout: timeout,
		})

		resp, err := c.Fetch(t.Context(), manifestRequest("GET", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * timeout) // the fake clock passes the header deadline
		releaseOnce.Do(func() { close(release) })
		if got := readBody(t, resp); got != body {
			t.Errorf("body of %d bytes, want %d", len(got), len(body))
		}

		for _, tag := range []string{"slow-headers", "hops"} {
			_, err = c.Fetch(t.Context(), manifestRequest("GET", tag))
			if !errors.Is(err, oci.ErrUpstreamTimeout) {
				t.Errorf("%s: %v, want ErrUpstreamTimeout", tag, err)
			}
		}
	})
}
