package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

func TestOperationalEndpoints(t *testing.T) {
	ts := startServer(t, Config{}, newTestCache(t, origintest.New(), nil))
	tests := []struct {
		method, path string
		notReady     bool
		wantStatus   int
		wantBody     string
	}{
		{method: "GET", path: "/healthz", wantStatus: 200, wantBody: "ok\n"},
		{method: "HEAD", path: "/healthz", wantStatus: 200},
		{method: "GET", path: "/readyz", wantStatus: 200, wantBody: "ready\n"},
		{method: "GET", path: "/readyz", notReady: true, wantStatus: 503, wantBody: "not ready\n"},
		{method: "GET", path: "/healthz", notReady: true, wantStatus: 200, wantBody: "ok\n"},
		{method: "POST", path: "/healthz", wantStatus: 405, wantBody: "method not allowed\n"},
		{method: "GET", path: "/metrics", wantStatus: 404, wantBody: "404 page not found\n"},
	}
	for i, tt := range tests {
		ts.SetReady(!tt.notReady)
		resp, body, err := ts.do(t, tt.method, tt.path, nil)
		if err != nil || resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
			t.Errorf("%s %s (ready %v): %v %d %q, want %d %q", tt.method, tt.path, !tt.notReady, err, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
		}
		if line := ts.logs.wait(t, i+1)[i]; line["level"] != slog.LevelDebug.String() {
			t.Errorf("%s logged at %v, want DEBUG", tt.path, line["level"])
		}
	}
}

// TestMetrics: requests are counted by kind and status, and body bytes by
// the source they came from: here a manifest from memory and a blob, larger
// than the memory tier takes, from disk.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	im := newImage()
	manifest := blobRequest(im.manifestDigest)
	manifest.Kind = oci.KindManifest
	warm := warmCache(t, im.origin, func(cfg *cache.Config) { cfg.MemoryMaxObject = 1 << 10 }, manifest, blobRequest(im.blobDigest))
	ts := startServer(t, Config{Metrics: m, Gatherer: reg}, warm)
	for _, target := range []string{"/v2/app/manifests/v1", "/v2/app/blobs/" + string(im.blobDigest), "/v2/app/blobs/" + string(im.blobDigest), "/v2/BAD/blobs/x"} {
		if _, _, err := ts.do(t, "GET", target, nil); err != nil {
			t.Fatal(err)
		}
	}
	ts.logs.wait(t, 4) // every stream closed and counted
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"manifest 200", m.Requests.WithLabelValues("manifest", "200"), 1},
		{"blob 200", m.Requests.WithLabelValues("blob", "200"), 2},
		{"other 400", m.Requests.WithLabelValues("other", "400"), 1},
		{"memory bytes", m.BytesServed.WithLabelValues("memory"), float64(len(im.manifest))},
		{"disk bytes", m.BytesServed.WithLabelValues("disk"), 2 * float64(len(im.blob))},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.RequestDuration); n != 3 {
		t.Errorf("request duration has %d series, want 3 (manifest, blob, other)", n)
	}
	resp, body, err := ts.do(t, "GET", "/metrics", nil)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `cacheyd_requests_total{code="200",kind="blob"} 2`) {
		t.Errorf("/metrics: %v %d\n%s", err, resp.StatusCode, body)
	}
}

// TestShutdownAbortsWaitingStreams: when Shutdown's deadline passes, the
// request contexts are cancelled and a body still waiting on a fill breaks.
func TestShutdownAbortsWaitingStreams(t *testing.T) {
	c, dg, gate := gatedBlob(t, 128<<10)
	ts := startServer(t, Config{}, c)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://x/v2/app/blobs/"+string(dg), nil)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ts.Shutdown(expired); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("body ended cleanly after shutdown aborted it")
	}
	line := ts.logs.wait(t, 1)[0]
	if line["err"] == nil || !strings.Contains(line["err"].(string), "context canceled") {
		t.Errorf("access line err = %v, want the cancellation", line["err"])
	}
	// The fill ends; its file is closed only if the server closed its reader.
	close(gate)
	c.closeReleased(t)
	if ts.ready.Load() {
		t.Error("still ready after Shutdown")
	}
	if err := ts.Serve(ts.ln); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil at once", err)
	}
}

// TestShutdownWaitsForStreams: a graceful Shutdown lets a body in progress
// finish.
func TestShutdownWaitsForStreams(t *testing.T) {
	const size = 128 << 10
	c, dg, gate := gatedBlob(t, size)
	ts := startServer(t, Config{}, c)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://x/v2/app/blobs/"+string(dg), nil)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, size/2)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	// Ends when the stream below completes.
	go func() { done <- ts.Shutdown(context.Background()) }()
	close(gate)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != size/2 {
		t.Fatalf("rest of body: %d bytes, %v", len(rest), err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	c.closeReleased(t)
}

// fakeAddrConn is a connection that only has a remote address.
type fakeAddrConn struct {
	net.Conn
	addr   net.Addr
	closed bool
}

func (c *fakeAddrConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeAddrConn) Close() error         { c.closed = true; return nil }

type chanListener struct {
	net.Listener
	conns chan net.Conn
}

func (l *chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func TestLimitListener(t *testing.T) {
	conn := func(ip string) *fakeAddrConn {
		return &fakeAddrConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
	}
	in := &chanListener{conns: make(chan net.Conn, 10)}
	l := newLimitListener(in, 0, 2, nil, slog.New(newLogSink()))
	a1, a2, a3, b1 := conn("10.0.0.1"), conn("10.0.0.1"), conn("::ffff:10.0.0.1"), conn("10.0.0.2")
	for _, c := range []net.Conn{a1, a2, a3, b1} {
		in.conns <- c
	}
	var got []net.Conn
	for range 3 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	if got[0].(*limitedConn).Conn != a1 || got[1].(*limitedConn).Conn != a2 || got[2].(*limitedConn).Conn != b1 {
		t.Fatalf("accepted %v, want a1, a2, b1", got)
	}
	if !a3.closed {
		t.Error("third connection from 10.0.0.1 (as IPv4-mapped IPv6) not refused")
	}
	// Closing twice gives one slot back, once.
	_ = got[0].Close()
	_ = got[0].Close()
	a4, a5 := conn("10.0.0.1"), conn("10.0.0.1")
	in.conns <- a4
	in.conns <- a5
	close(in.conns)
	c, err := l.Accept()
	if err != nil || c.(*limitedConn).Conn != a4 {
		t.Fatalf("after a close: %v, %v; want a4", c, err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) || !a5.closed {
		t.Errorf("a5 accepted (closed %v, err %v); only one slot was freed", a5.closed, err)
	}
	if n := l.open(); n != 3 {
		t.Errorf("%d connections held, want 3", n)
	}
}

func TestLimitListenerTotal(t *testing.T) {
	in := &chanListener{conns: make(chan net.Conn, 10)}
	l := newLimitListener(in, 2, 0, nil, slog.New(newLogSink()))
	conns := []*fakeAddrConn{
		{addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.1")}}, {addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.2")}},
		{addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.3")}}, {addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.4")}},
	}
	for _, c := range conns {
		in.conns <- c
	}
	close(in.conns)
	for i := range 2 {
		if c, err := l.Accept(); err != nil || c.(*limitedConn).Conn != conns[i] {
			t.Fatalf("accept %d = %v, %v", i, c, err)
		}
	}
	if c, err := l.Accept(); !errors.Is(err, net.ErrClosed) || !conns[2].closed || !conns[3].closed {
		t.Fatalf("beyond the limit: accepted %v, %v; want both refused", c, err)
	}
}
