package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Cache is what the server needs of the read path; *cache.Cache is one.
// Errors that are a registry's answer are *oci.Error.
type Cache interface {
	// Get answers a manifest or blob.
	Get(ctx context.Context, req *oci.Request) (*cache.Object, error)
	// List answers a tag list or referrers.
	List(ctx context.Context, req *oci.Request) (*cache.Listing, error)
}

// Server is cacheyd's HTTP front end. Create it with New.
type Server struct {
	cfg        Config
	cache      Cache
	registries oci.RegistryList
	guard      guard
	// keys prove and check what cacheyds of this cluster send each other
	// (Config.ClusterSecret); nil without a secret: every peer's request
	// is refused.
	keys       *peerauth.Keys
	loopLogged atomic.Int64 // when a loop was last logged, Unix nanoseconds
	log        *slog.Logger
	m          *metrics.Metrics
	counters   counters // m's request metrics, at hand
	// promHandler serves /metrics; nil without Config.Gatherer.
	promHandler fasthttp.RequestHandler
	http        *fasthttp.Server
	ready       atomic.Bool
	started     time.Time // for the status page's uptime

	// base is the parent of every request's context. Shutdown cancels it
	// once connections are drained or its own deadline has passed, which
	// ends whatever a remaining response is still waiting for.
	base       context.Context
	cancelBase context.CancelFunc

	mu        sync.Mutex       // guards listeners, limits and closed
	listeners []net.Listener   // every listener given to Serve
	limits    []*limitListener // the limit listener of each, beneath TLS if any
	closed    bool             // Shutdown has been called
}

// New returns a Server answering from cache. It panics if cfg.Validate
// fails: check the configuration first where it is read. A new Server is
// ready (see SetReady).
func New(cfg Config, c Cache) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	m := cfg.Metrics
	if m == nil {
		m = metrics.New(nil)
	}
	s := &Server{cfg: cfg, cache: c, registries: cfg.Registries, guard: newGuard(cfg.ClientTokens), log: cfg.Logger, m: m, started: time.Now()}
	s.counters.m = m
	if cfg.ClusterSecret != "" {
		s.keys, _ = peerauth.New(cfg.ClusterSecret) // Validate checked it
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	if cfg.Gatherer != nil {
		s.promHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	s.ready.Store(true)
	s.http = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.handleReadError,
		Name:         cfg.Name,
		// No "Server: fasthttp" unless a Name is configured.
		NoDefaultServerHeader: true,
		// Every response sets its own Content-Type; a manifest of unknown
		// type goes without one rather than as text/plain.
		NoDefaultContentType: true,
		// Serve's listener holds connections to MaxConns and answers the
		// ones beyond with OCI error JSON (limit.go); fasthttp's own limit,
		// which answers in plain text, only has to stay out of its way: a
		// connection is released to the listener a moment before its
		// worker is released to fasthttp.
		Concurrency: 2 * cfg.MaxConns,
		// A request header section must fit the read buffer.
		ReadBufferSize: cfg.MaxHeaderBytes,
		ReadTimeout:    cfg.ReadTimeout,
		// One deadline for headers and in-memory bodies; streamed bodies
		// renew it per piece (stream.go).
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		// MaxConnsPerIP is enforced by Serve's listener too, which keeps
		// sendfile (limit.go); fasthttp's own would not.
		MaxRequestBodySize:            maxRequestBodyBytes,
		DisableHeaderNamesNormalizing: false,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             false,
		// Keep-alive connections are told to close once Shutdown begins.
		CloseOnShutdown: true,
		Logger:          fasthttpLogger{cfg.Logger},
	}
	return s
}

// Handler returns the request handler, for serving with a fasthttp.Server
// of one's own (tests, embedding). Serve uses the same handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Serve answers connections accepted on ln until Shutdown, then returns
// nil, speaking HTTPS when Config.TLS is set. Any other error is the
// listener's.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, s.cfg.TLS) }

// ServePeers is Serve for the listener the replicas of a cluster ask each
// other on, speaking HTTPS when Config.PeerTLS is set: the same API, with
// a certificate of its own (the nodes keep plain HTTP on the other).
func (s *Server) ServePeers(ln net.Listener) error { return s.serve(ln, s.cfg.PeerTLS) }

func (s *Server) serve(ln net.Listener, serving *tls.Config) error {
	var tc *tls.Config
	if serving != nil {
		tc = serving.Clone()
		// fasthttp speaks HTTP/1.1 only.
		tc.NextProtos = []string{"http/1.1"}
	}
	lim := newLimitListener(ln, s.cfg.MaxConns, s.cfg.MaxConnsPerIP, newRefuser(tc, s.ready.Load), s.log)
	ln = lim
	if tc != nil {
		ln = &tlsListener{Listener: lim, config: tc}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.limits = append(s.limits, lim)
	s.mu.Unlock()
	err := s.http.Serve(ln)
	if s.isClosed() {
		// Shutdown may have closed ln itself before fasthttp knew of it.
		return nil
	}
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// SetReady sets what /readyz answers: 200 when ready, 503 otherwise. Use it
// to take the server out of a Service's endpoints before stopping it.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Shutdown stops the server gracefully: readiness turns false, listeners
// close, keep-alive connections are told to close, and Shutdown waits for
// the requests in progress, streamed bodies included, until ctx is done.
// Then every request's context is cancelled, which aborts responses still
// waiting on a fill. It returns ctx's error if it stopped waiting early.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	s.mu.Lock()
	s.closed = true
	lns := s.listeners
	s.mu.Unlock()
	err := s.http.ShutdownWithContext(ctx)
	for _, ln := range lns {
		// Covers a Serve that registered ln with us but not yet with
		// fasthttp; a second close of a closed listener only errs.
		_ = ln.Close()
	}
	s.cancelBase()
	if err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// fasthttpLogger sends fasthttp's own messages (mostly connections that
// broke or timed out) to slog at Debug: they are the clients' business, and
// the access log already has every request.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("http: " + fmt.Sprintf(format, args...))
	}
}
