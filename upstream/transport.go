package upstream

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
)

// The chain every upstream request passes through, outermost first:
//
//	identity (ggcr bearer/basic, see auth.go) or forwardAuth or nothing
//	→ userAgent → counted → scopeGuard
//	→ the fetch http.Transport with its policy dialer
//
// except token requests, which an identity's realmGuard sends
//
//	→ userAgent → counted → the token http.Transport with its own dialer
//
// Authorization is only ever added by a RoundTripper that checks the
// request's host, never put on the request the http.Client starts from, so a
// redirect to another host cannot carry it.

// newHTTPTransport is one of the Client's own transports: a policy dialer,
// the timeouts, raw bytes (the caller asks for identity encoding) and
// HTTP/2 where the server offers it. The wait for response headers is not
// bounded per request here: Fetch bounds its whole way to the headers
// (header.go), and an identity's setup has AuthTimeout.
func newHTTPTransport(cfg Config, d *dialer) *http.Transport {
	return &http.Transport{
		// No proxy from the environment: the dial policy must see the
		// address it connects to.
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSClientConfig:        cfg.TLSConfig.Clone(),
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes,
		ForceAttemptHTTP2:      true,
		MaxIdleConnsPerHost:    maxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second, // as http.DefaultTransport
	}
}

// labelsKey carries the metric labels of the Fetch a request belongs to.
type labelsKey struct{}

type labels struct{ registry, kind string }

func withLabels(ctx context.Context, registry, kind string) context.Context {
	return context.WithValue(ctx, labelsKey{}, labels{registry, kind})
}

// scopeKey carries the scope (trust.go) of the Fetch a request belongs to:
// the addresses the operator named that it may dial.
type scopeKey struct{}

func withScope(ctx context.Context, s scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// scopeFrom is the scope in ctx; without one, the zero scope, which may
// dial no address the operator named.
func scopeFrom(ctx context.Context) scope {
	s, _ := ctx.Value(scopeKey{}).(scope)
	return s
}

// scopeGuard refuses a request to an address withheld from its fetch's
// scope before the transport looks for a connection. The dialer refuses
// such an address too, but a connection that a fetch in scope left idle
// is reused by host:port without a dial, so only the request can be
// judged. One sits directly on each of the Client's own transports and
// sees every request it carries: the first, each redirect hop, a
// remembered location, an identity's ping, a token request.
type scopeGuard struct {
	inner http.RoundTripper
	judge func(ctx context.Context, addr string) addrTrust // the transport's dialer's
}

func (g scopeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	host, port := urlAddr(req.URL)
	if g.judge(req.Context(), addrKey(host, port)) == withheld {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, refusal(host, withheldWhy(req.URL.Host))
	}
	return g.inner.RoundTrip(req)
}

// counted counts every request sent upstream, redirect hops, pings and token
// requests included, by the labels of the Fetch it serves: an identity's
// setup counts as kind "auth", a token refreshed in the middle of a fetch
// under that fetch's kind.
type counted struct {
	inner   http.RoundTripper
	metrics *metrics.Metrics
}

func (c counted) RoundTrip(req *http.Request) (*http.Response, error) {
	l, _ := req.Context().Value(labelsKey{}).(labels)
	resp, err := c.inner.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	c.metrics.UpstreamRequests.WithLabelValues(l.registry, req.Method, l.kind, code).Inc()
	return resp, err
}

// userAgent sets cacheyd's User-Agent on every request, including the ping
// and token requests go-containerregistry makes.
type userAgent struct {
	inner http.RoundTripper
	ua    string
}

func (u userAgent) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", u.ua)
	return u.inner.RoundTrip(req)
}

// forwardAuth sends a client's own Authorization to the registry's host
// only; a redirect elsewhere (a CDN) goes without it.
type forwardAuth struct {
	inner         http.RoundTripper
	host          string // host[:port] of the registry's base URL
	authorization string
}

func (f forwardAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == f.host {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", f.authorization)
	}
	return f.inner.RoundTrip(req)
}

// forceScheme makes requests to the registry's host use the scheme of its
// base URL. go-containerregistry builds its ping and token URLs from the
// registry name alone and would try https first against an http mirror.
type forceScheme struct {
	inner  http.RoundTripper
	host   string
	scheme string
}

func (f forceScheme) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == f.host && req.URL.Scheme != f.scheme {
		req = req.Clone(req.Context())
		req.URL.Scheme = f.scheme
	}
	return f.inner.RoundTrip(req)
}

// checkRedirect follows at most 10 redirects, never from https to http, and
// drops any Authorization when the host changes (net/http keeps it for the
// same host name on another port, which is another server).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errTooManyRedirects
	}
	prev := via[len(via)-1]
	if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errDowngrade
	}
	if req.URL.Host != via[0].URL.Host {
		req.Header.Del("Authorization")
	}
	return nil
}
