package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier/disk"
	"github.com/cacheyd/cacheyd/tier/memory"
)

// The shared helpers of the server's tests: a real cache over the fake
// origin (and the ways to make it answer from each source), a spy on what
// the server asks it, servers on in-memory and TCP listeners, raw
// connections, and the access log as a way to wait for a request's end.

// waitLimit bounds every wait of a test on something the server does; it is
// a failure deadline, never a way to let time pass.
const waitLimit = 10 * time.Second

var errBoom = errors.New("boom: /var/lib/cacheyd/secret path")

const (
	// digestA names content no origin holds, for requests that are refused
	// or fail before any content matters.
	digestA = oci.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")

	manifestType = "application/vnd.oci.image.manifest.v1+json"
	challenge    = `Bearer realm="https://auth.example.test/token",service="registry.example.test",scope="repository:org/private:pull"`
)

// testData is size bytes of a recognisable pattern.
func testData(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// errorCode returns the code of an OCI error body, or "" if body is not one.
func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e errorJSON
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
		return ""
	}
	return e.Errors[0].Code
}

// image is what most tests ask for: a manifest under the tags they use and a
// blob, held by a fake origin. The origin answers a tag or digest for any
// registry and repository.
type image struct {
	origin         *origintest.Origin
	manifest       []byte
	manifestDigest oci.Digest
	blob           []byte
	blobDigest     oci.Digest
}

func newImage() *image {
	o := origintest.New()
	im := &image{origin: o, manifest: []byte(`{"schemaVersion":2,"mediaType":"` + manifestType + `"}`), blob: testData(3000)}
	im.manifestDigest = o.Add(im.manifest, manifestType)
	im.blobDigest = o.Add(im.blob, "")
	for _, tag := range []string{"latest", "v1", "v3", "3.20"} {
		o.Tag(tag, im.manifestDigest)
	}
	return im
}

// testCache is a real cache in a directory of its own.
type testCache struct {
	*cache.Cache
	dir string
	// origin, when the cache's origin is the fake one, is asked for the
	// bodies left open.
	origin *origintest.Origin
	// mem and disk are the tiers under the cache, closed after it.
	mem  *memory.Memory
	disk *disk.Disk
	once sync.Once
}

// newTestCache returns a real cache over origin in a temporary directory,
// with a memory tier of 4 MiB for objects up to 64 KiB, changed by mod. An
// upstream attempt that fails without progress is not made again, so a
// fault a test sets is seen at once. The cache is closed when the test ends.
func newTestCache(t testing.TB, origin cache.Origin, mod func(*cache.Config)) *testCache {
	t.Helper()
	c, err := openTestCache(t.TempDir(), origin, mod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

// openTestCache is newTestCache in dir, for a caller that closes it.
func openTestCache(dir string, origin cache.Origin, mod func(*cache.Config)) (*testCache, error) {
	cfg := cache.Config{Dir: dir, MemoryBytes: 4 << 20, MemoryMaxObject: 64 << 10, FillRetries: -1,
		Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil) // the cache's and its tiers'
	}
	// The default tiers, as internal/app opens them.
	mem, err := memory.New(memory.Config{Bytes: cfg.MemoryBytes, MaxObject: cfg.MemoryMaxObject, Metrics: cfg.Metrics})
	if err != nil {
		return nil, err
	}
	d, err := disk.Open(disk.Config{Dir: cfg.Dir, Budget: cfg.DiskBytes, Metrics: cfg.Metrics, Logger: cfg.Logger})
	if err != nil {
		mem.Close()
		return nil, err
	}
	tiers := cache.Tiers{Disk: cache.DiskOf(d)}
	<-d.Loaded() // evictions wait for the whole index
	if mem != nil {
		tiers.Memory = mem
	}
	c, err := cache.New(cfg, origin, tiers)
	if err != nil {
		mem.Close()
		return nil, errors.Join(err, d.Close())
	}
	tc := &testCache{Cache: c, dir: cfg.Dir, mem: mem, disk: d}
	tc.origin = origintest.FakeOf(origin)
	return tc, nil
}

// close closes the cache once: its fills are aborted and waited for; then
// its tiers, memory and disk, which records a clean stop.
func (c *testCache) close() {
	c.once.Do(func() {
		_ = c.Cache.Close()
		c.mem.Close()
		_ = c.disk.Close()
	})
}

// released fails t if a body the fake origin handed out, or a file under the
// cache's directory, is still open: whoever took it (the server, for a
// stream; the cache, for a fill) did not close it. Call it when nothing runs
// in the cache any more, or after closeReleased's Close.
func (c *testCache) released(t *testing.T) {
	t.Helper()
	if c.origin != nil {
		if n := c.origin.OpenBodies(); n != 0 {
			t.Errorf("%d origin bodies left open", n)
		}
	}
	checkNoneOpen(t, c.dir)
}

// closeReleased closes the cache, which waits for its fills to end, and then
// checks that everything was released: a fill's pending file is closed only
// once every reader of it is, so a body the server never closed keeps it
// open.
func (c *testCache) closeReleased(t *testing.T) {
	t.Helper()
	c.close()
	c.released(t)
}

// checkNoneOpen fails t if this process holds a file under dir open. It
// reads /proc/self/fd, so it checks on Linux only.
func checkNoneOpen(t *testing.T, dir string) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return // no /proc: not Linux
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Errorf("file left open: %s", p)
		}
	}
}

func blobRequest(dg oci.Digest) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
}

// fetch asks c for req and reads the whole body, as a client would.
func fetch(t testing.TB, c Cache, req *oci.Request) []byte {
	t.Helper()
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatalf("get %s: %v", req.Reference, err)
	}
	r, err := obj.Body(0, -1)
	if err != nil {
		obj.Close()
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", req.Reference, err)
	}
	return b
}

// warmCache returns a cache on a directory that already holds the content
// of reqs: a first cache fetched it and was closed (so its fills have ended
// and released everything) before this one opened it, as after a restart;
// each is then asked once more, which puts small objects back in memory.
func warmCache(t testing.TB, origin cache.Origin, mod func(*cache.Config), reqs ...*oci.Request) *testCache {
	t.Helper()
	dir := t.TempDir()
	inDir := func(cfg *cache.Config) {
		if mod != nil {
			mod(cfg)
		}
		cfg.Dir = dir
	}
	first, err := openTestCache(dir, origin, inDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range reqs {
		fetch(t, first, req)
	}
	first.close()
	c := newTestCache(t, origin, inDir)
	for _, req := range reqs {
		fetch(t, c, req)
	}
	return c
}

// source is a way content reaches the server through the real cache.
type source struct {
	name   string
	source cache.Source // what the access line of a GET says
	// serve returns a cache that answers every request for data from this
	// source; data is held by a fake origin as a blob or, with a media
	// type, a manifest.
	serve func(t *testing.T, data []byte, mediaType string) servedCache
}

// servedCache is a cache set up by a source, and its check that whatever
// the server took of it was released once the requests ended.
type servedCache struct {
	Cache
	released func(t *testing.T)
}

var sources = []source{
	// A memory hit: the shared slice.
	{"memory", cache.SourceMemory, func(t *testing.T, data []byte, mediaType string) servedCache {
		o, req := holding(data, mediaType)
		c := warmCache(t, o, nil, req)
		return servedCache{c, c.released}
	}},
	// A disk hit without a memory tier: the *os.File, or a window of it.
	{"disk", cache.SourceDisk, func(t *testing.T, data []byte, mediaType string) servedCache {
		o, req := holding(data, mediaType)
		c := warmCache(t, o, func(cfg *cache.Config) { cfg.MemoryBytes = 0 }, req)
		return servedCache{c, c.released}
	}},
	// A fill: every request is the first its cache sees.
	{"fill", cache.SourceFillNew, func(t *testing.T, data []byte, mediaType string) servedCache {
		o, _ := holding(data, mediaType)
		f := &freshCaches{origin: o, base: t.TempDir()}
		t.Cleanup(f.close)
		return servedCache{f, f.released}
	}},
	// An uncached stream: the disk budget cannot take the object, so each
	// request streams it from the origin, verified on the way.
	{"uncached", cache.SourceUncached, func(t *testing.T, data []byte, mediaType string) servedCache {
		o, _ := holding(data, mediaType)
		c := newTestCache(t, o, func(cfg *cache.Config) { cfg.DiskBytes = 1 })
		return servedCache{c, c.released}
	}},
}

// holding returns a fake origin holding data (a manifest if mediaType is
// set) and a request for it.
func holding(data []byte, mediaType string) (*origintest.Origin, *oci.Request) {
	o := origintest.New()
	req := blobRequest(o.Add(data, mediaType))
	if mediaType != "" {
		req.Kind = oci.KindManifest
	}
	return o, req
}

// freshCaches answers each request from a new cache that holds nothing, so
// that every GET starts a fill and streams it.
type freshCaches struct {
	origin *origintest.Origin
	base   string

	mu     sync.Mutex // guards caches
	caches []*testCache
}

func (f *freshCaches) Get(ctx context.Context, req *oci.Request) (*cache.Object, error) {
	f.mu.Lock()
	dir := filepath.Join(f.base, strconv.Itoa(len(f.caches)))
	c, err := openTestCache(dir, f.origin, nil)
	if err == nil {
		f.caches = append(f.caches, c)
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.Get(ctx, req)
}

// List answers no listing: freshCaches are for content.
func (f *freshCaches) List(context.Context, *oci.Request) (*cache.Listing, error) {
	return nil, errors.New("freshCaches: no listings")
}

func (f *freshCaches) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.caches {
		c.close()
	}
}

// released closes every cache made so far (waiting for their fills) and
// checks that nothing is left open.
func (f *freshCaches) released(t *testing.T) {
	t.Helper()
	f.close()
	if n := f.origin.OpenBodies(); n != 0 {
		t.Errorf("%d origin bodies left open", n)
	}
	checkNoneOpen(t, f.base)
}

// spyCache is a Cache that records every request the server asks and its
// context, and answers from the cache beneath.
type spyCache struct {
	Cache

	mu   sync.Mutex // guards reqs and ctxs
	reqs []oci.Request
	ctxs []context.Context
}

func (s *spyCache) Get(ctx context.Context, req *oci.Request) (*cache.Object, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, *req)
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	return s.Cache.Get(ctx, req)
}

func (s *spyCache) List(ctx context.Context, req *oci.Request) (*cache.Listing, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, *req)
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	return s.Cache.List(ctx, req)
}

func (s *spyCache) reset() {
	s.mu.Lock()
	s.reqs, s.ctxs = nil, nil
	s.mu.Unlock()
}

func (s *spyCache) requests() []oci.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]oci.Request(nil), s.reqs...)
}

func (s *spyCache) contexts() []context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]context.Context(nil), s.ctxs...)
}

// waitDone waits until exactly n requests were asked and the context of
// each is done.
func (s *spyCache) waitDone(t *testing.T, n int) {
	t.Helper()
	ctxs := s.contexts()
	if len(ctxs) != n {
		t.Fatalf("%d requests asked, want %d", len(ctxs), n)
	}
	limit := timeout(t)
	for i, ctx := range ctxs {
		select {
		case <-ctx.Done():
		case <-limit:
			t.Fatalf("waited %v: %d of %d request contexts done", waitLimit, i, n)
		}
	}
}

// newSpy returns a spy on a real cache over the image's origin.
func newSpy(t *testing.T, im *image) *spyCache {
	return &spyCache{Cache: newTestCache(t, im.origin, nil)}
}

// cacheFunc is a Cache made of a function: for the few answers a real cache
// never gives.
type cacheFunc func(ctx context.Context, req *oci.Request) (*cache.Object, error)

func (f cacheFunc) Get(ctx context.Context, req *oci.Request) (*cache.Object, error) {
	return f(ctx, req)
}

// List answers no listing: a cacheFunc is for content.
func (f cacheFunc) List(context.Context, *oci.Request) (*cache.Listing, error) {
	return nil, errors.New("cacheFunc: no listings")
}

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

// testServer is a Server on a listener of its own with a net/http client.
type testServer struct {
	*Server
	logs   *logSink
	client *http.Client
	ln     *fasthttputil.InmemoryListener // for in-memory servers
	addr   string                         // for TCP servers
}

// startServer serves c on an in-memory listener.
func startServer(t *testing.T, cfg Config, c Cache) *testServer {
	t.Helper()
	logs := newLogSink()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logs)
	}
	ln := fasthttputil.NewInmemoryListener()
	return serveOn(t, New(cfg, c), ln, logs, func(context.Context, string, string) (net.Conn, error) { return ln.Dial() })
}

// startTCP serves c on a loopback TCP listener, wrapped by wrap if set.
func startTCP(t *testing.T, cfg Config, c Cache, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	logs := newLogSink()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logs)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = tcp
	if wrap != nil {
		ln = wrap(tcp)
	}
	var d net.Dialer
	return serveOn(t, New(cfg, c), ln, logs, func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", tcp.Addr().String())
	})
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

// limit returns the limit listener of a server serving TCP, once Serve has
// made it (a request answered on a connection of its own proves it), with
// that connection's slot given back.
func (ts *testServer) limit(t *testing.T) *limitListener {
	t.Helper()
	c := dialRaw(t, ts.addr)
	sendRaw(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	readRaw(t, bufio.NewReader(c), "GET")
	c.Close()
	ts.mu.Lock()
	lim := ts.limits[0]
	ts.mu.Unlock()
	waitOpen(t, lim, 0)
	return lim
}

// waitOpen waits until lim holds exactly n connections.
func waitOpen(t *testing.T, lim *limitListener, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := lim.waitOpen(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// timeout is a channel that fires after waitLimit, as a failure deadline.
func timeout(t *testing.T) <-chan struct{} {
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	t.Cleanup(cancel)
	return ctx.Done()
}

// dialRaw opens a TCP connection to addr whose reads fail after waitLimit,
// so that a test waiting for an answer that never comes fails instead of
// hanging.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return deadlined(t, c)
}

func deadlined(t *testing.T, c net.Conn) net.Conn {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	return c
}

func sendRaw(t *testing.T, c net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// readRaw reads one response to a request of method and its whole body.
func readRaw(t *testing.T, br *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, body
}

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

// selfSigned makes a certificate for 127.0.0.1, valid for an hour.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cacheyd test"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// gatedBlob returns a cache whose origin holds a blob of size bytes and
// holds the second half of every body until the returned gate is closed:
// a fill in flight, readable to its middle.
func gatedBlob(t *testing.T, size int) (*testCache, oci.Digest, chan struct{}) {
	t.Helper()
	o := origintest.New()
	dg := o.Add(testData(size), "")
	gate := make(chan struct{})
	return newTestCache(t, origintest.Gate(o, gate), nil), dg, gate
}

// pacedBlob is a blob whose origin sends nothing of it until told: a fill of
// it is in flight, its readers waiting, for as long as a test likes, and
// gets its bytes as the test hands them out. A spy sits on its cache.
type pacedBlob struct {
	*spyCache
	cache  *testCache
	digest oci.Digest
	data   []byte
	// pace lets the origin's body out: n more bytes for each n sent, the
	// rest once closed.
	pace chan int
}

// newPacedBlob makes a paced blob of size bytes; with unknownSize the
// origin announces no size, so that the fill streams it chunked.
func newPacedBlob(t *testing.T, size int, unknownSize bool) *pacedBlob {
	t.Helper()
	o := origintest.New()
	p := &pacedBlob{data: testData(size), pace: make(chan int)}
	p.digest = o.Add(p.data, "")
	var up origintest.Fetcher = origintest.Pace(o, p.pace)
	if unknownSize {
		up = origintest.UnknownSize(up)
	}
	p.cache = newTestCache(t, up, nil)
	p.spyCache = &spyCache{Cache: p.cache}
	return p
}

// send lets n more bytes of the body out.
func (p *pacedBlob) send(t *testing.T, n int) {
	t.Helper()
	select {
	case p.pace <- n:
	case <-timeout(t):
		t.Fatalf("waited %v for the origin to take %d more bytes", waitLimit, n)
	}
}
