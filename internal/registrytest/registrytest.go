// Package registrytest runs a real in-process OCI registry for tests, wrapped
// to demand tokens like Docker Hub, redirect blobs to a second host, count
// requests and inject faults.
//
// The registry is go-containerregistry's pkg/registry behind httptest. Three
// servers share its storage, all on 127.0.0.1:
//
//   - the registry, advertised as localhost:<port> (go-containerregistry
//     refuses token realms and redirects that go from a host name to a
//     loopback IP literal), which records each request, runs the hook,
//     checks credentials, serves /token and redirects blob GETs when asked to;
//   - the CDN, advertised as localhost:<port2> (or 127.0.0.1:<port2>, see
//     Options.CDNHostname), which serves blobs from signed URLs and refuses
//     any request carrying Authorization, so a client that carries
//     credentials across a redirect fails loudly;
//   - a seeding server that reaches storage directly: seeding is neither
//     authenticated nor recorded.
//
// By default the CDN shares the registry's host name and differs in port:
// localhost is the only name that resolves to loopback everywhere, and
// go-containerregistry refuses redirects from a name to a loopback IP
// literal. That is still another origin (host:port) but a stricter test than
// a real CDN: net/http's Client copies an Authorization header set on the
// request to a redirect target with the same host name, whatever the port, so
// such a client must drop the header itself when a redirect changes
// host:port, or run against Options.CDNHostname "127.0.0.1". Clients that
// add credentials in their transport for the registry's host:port only (like
// go-containerregistry) work with both.
package registrytest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a running fake registry. Its methods are safe for concurrent
// use.
type Registry struct {
	opts    Options
	blobs   registry.BlobHandler // the storage of inner; the CDN reads it directly
	inner   http.Handler         // go-containerregistry's registry
	front   *httptest.Server     // the registry host
	cdn     *httptest.Server     // the blob host that Redirect points to
	seed    *httptest.Server     // inner without auth or recording, for seeding
	host    string               // "localhost:<front port>"
	cdnHost string               // "localhost:<cdn port>"
	key     []byte               // signs CDN URLs
	tokens  *tokenStore
	rec     *recorder
	hook    atomic.Pointer[Hook] // nil when no hook is set
	pulls   pullCounter

	done      chan struct{} // closed by Close; releases held requests
	closeOnce sync.Once
}

// New starts a fake registry configured by opts and closes it when the test
// ends. Invalid options (Token and Basic together, say) fail t.
func New(t testing.TB, opts Options) *Registry {
	t.Helper()
	r, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// NewServer starts a fake registry configured by opts, for use outside
// tests (the benchmark harness). The caller must Close it.
func NewServer(opts Options) (*Registry, error) {
	if opts.Token && opts.Basic {
		return nil, errors.New("registrytest: Options.Token and Options.Basic are mutually exclusive")
	}
	cdnName := opts.CDNHostname
	switch cdnName {
	case "":
		cdnName = "localhost"
	case "localhost", "127.0.0.1":
	default:
		return nil, fmt.Errorf("registrytest: Options.CDNHostname %q is neither localhost nor 127.0.0.1", cdnName)
	}
	key := make([]byte, 32)
	rand.Read(key)
	blobs := newMemBlobs()
	r := &Registry{
		opts:  opts,
		blobs: blobs,
		inner: registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(blobs),
			registry.WithReferrersSupport(!opts.NoReferrers)),
		key:    key,
		tokens: newTokenStore(opts.TokenTTL),
		rec:    newRecorder(),
		done:   make(chan struct{}),
	}
	r.pulls.limit = opts.PullLimit
	front, err := newServer(r.handler(HostRegistry), opts.Addr)
	if err != nil {
		return nil, err
	}
	r.front = front
	if r.cdn, err = newServer(r.handler(HostCDN), opts.CDNAddr); err != nil {
		front.Close()
		return nil, fmt.Errorf("registrytest: CDN: %w", err)
	}
	r.seed, _ = newServer(r.inner, "")
	r.host = advertise(r.front, "localhost")
	r.cdnHost = advertise(r.cdn, cdnName)
	return r, nil
}

// newServer starts an httptest server for h listening on addr, a loopback
// host:port; empty means any free port on 127.0.0.1.
func newServer(h http.Handler, addr string) (*httptest.Server, error) {
	if addr == "" {
		return httptest.NewServer(h), nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("registrytest: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("registrytest: address %q is not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registrytest: listen: %w", err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	return s, nil
}

// Host is the registry's host:port, "localhost:<port>", as used in image
// references.
func (r *Registry) Host() string { return r.host }

// URL is the registry's base URL, "http://localhost:<port>".
func (r *Registry) URL() string { return "http://" + r.host }

// CDNHost is the blob host's host:port, "localhost:<port>" unless
// Options.CDNHostname says otherwise.
func (r *Registry) CDNHost() string { return r.cdnHost }

// CDNURL is the blob host's base URL, "http://" + CDNHost().
func (r *Registry) CDNURL() string { return "http://" + r.cdnHost }

// advertise is s's address under the host name hostname.
func advertise(s *httptest.Server, hostname string) string {
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return net.JoinHostPort(hostname, port)
}

// Client returns an HTTP client for the registry and the CDN whose
// transport is not shared with other tests.
func (r *Registry) Client() *http.Client { return r.front.Client() }

// Close releases held requests, drops every connection and stops the
// servers. New registers it with t.Cleanup; calling it again does nothing.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		close(r.done)
		for _, s := range []*httptest.Server{r.front, r.cdn, r.seed} {
			s.CloseClientConnections()
			s.Close()
		}
	})
}

// handler records each request to host, runs the hook and then serves it.
func (r *Registry) handler(host string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rq := classify(req, host)
		r.rec.add(rq)
		req = req.WithContext(context.WithValue(req.Context(), callKey{}, &call{reg: r, req: rq}))
		if h := r.hook.Load(); h != nil && (*h)(w, req) {
			return
		}
		r.serve(w, req, rq)
	})
}

// serve answers req the way the host it arrived at does without a hook.
func (r *Registry) serve(w http.ResponseWriter, req *http.Request, rq Request) {
	if rq.Host == HostCDN {
		r.serveCDN(w, req, rq)
		return
	}
	if rq.Kind == KindToken && r.opts.Token {
		r.serveToken(w, req)
		return
	}
	if !r.authorize(w, req, rq) {
		return
	}
	if rq.Kind == KindManifest && !r.pulls.account(w, req) {
		return
	}
	if rq.Kind == KindBlob && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		r.blob(w, req, rq)
		return
	}
	if req.Method == http.MethodGet {
		switch rq.Kind {
		case KindTags:
			r.serveTags(w, req, rq)
			return
		case KindReferrers:
			if !r.opts.NoReferrers {
				r.serveReferrers(w, req)
				return
			}
		}
	}
	r.inner.ServeHTTP(w, req)
}
