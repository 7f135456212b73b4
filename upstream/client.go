package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Client fetches content from upstream registries. It is safe for
// concurrent use.
type Client struct {
	urls       map[string]*url.URL // canonical registry → base URL
	creds      map[string]authn.Authenticator
	registries oci.RegistryList
	trust      trust
	labels     *registryLabels
	rt         http.RoundTripper // userAgent → counted → scopeGuard → fetch transport
	realmRT    http.RoundTripper // userAgent → counted → token transport
	ids        *identities
	locations  locations     // where blob GETs were redirected (locations.go)
	timeout    time.Duration // Config.ResponseHeaderTimeout
	metrics    *metrics.Metrics
	log        *slog.Logger
	budgets    *budgets // each registry's pull budget (budget.go)
}

// New returns a Client for cfg. It reads cfg.CredentialsFile and fails on a
// malformed RegistryURLs, AllowedHosts or AllowRealms entry or credentials
// file.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	urls, err := parseRegistryURLs(cfg.RegistryURLs)
	if err != nil {
		return nil, err
	}
	creds, err := loadCredentials(cfg.CredentialsFile, cfg.Logger)
	if err != nil {
		return nil, err
	}
	registries, err := oci.ParseRegistryList(cfg.Registries)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	tr, err := newTrust(urls, cfg.AllowedHosts, cfg.AllowRealms)
	if err != nil {
		return nil, err
	}
	configured := append([]string(nil), registries...)
	for reg := range urls {
		configured = append(configured, reg)
	}
	c := &Client{
		labels:     newRegistryLabels(configured),
		urls:       urls,
		creds:      creds,
		registries: registries,
		trust:      tr,
		metrics:    cfg.Metrics,
		log:        cfg.Logger,
		timeout:    cfg.ResponseHeaderTimeout,
	}
	// Two transports, so that token requests and fetches share neither
	// connections nor trust: only the token transport may dial an allowed
	// realm's address. Both dial a mapped or allowed address only within
	// the scope of the fetch they serve (trust.go), which their guards hold
	// to even for a pooled connection.
	fetchBase, tokenBase := cfg.Transport, cfg.Transport
	if cfg.Transport == nil {
		fetchBase = scopeGuard{inner: newHTTPTransport(cfg, newDialer(cfg, fetchJudge(tr))), judge: fetchJudge(tr)}
		tokenBase = scopeGuard{inner: newHTTPTransport(cfg, newDialer(cfg, tokenJudge(tr))), judge: tokenJudge(tr)}
	}
	c.rt = userAgent{inner: counted{inner: fetchBase, metrics: cfg.Metrics}, ua: cfg.UserAgent}
	c.realmRT = userAgent{inner: counted{inner: tokenBase, metrics: cfg.Metrics}, ua: cfg.UserAgent}
	c.budgets = newBudgets(cfg.Now, c.labels, cfg.Metrics, cfg.Logger)
	c.ids = newIdentities(cfg.AuthCacheSize, cfg.AuthTimeout, c.newIdentity)
	return c, nil
}

// Fetch asks upstream for a manifest, a blob or a listing (a tag list, the
// referrers of a digest: one page, as req.List asks, with the Link to the
// next in the Response). A registry's answer that is
// not content is an *oci.Error (a refusal by cacheyd's registry policy is
// 403 DENIED and wraps ErrRefused); failing to reach the registry at all
// wraps oci.ErrUpstreamUnavailable, and also oci.ErrUpstreamTimeout when no
// response headers came within Config.ResponseHeaderTimeout (header.go).
// On success the caller closes the Response's Body.
func (c *Client) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	t, err := c.route(req)
	if err != nil {
		return nil, err
	}
	if err := c.budgets.held(t.registry, req); err != nil {
		return nil, err
	}
	ctx = withLabels(ctx, c.labels.of(t.registry), req.Kind.String())
	// The scope goes with every request of this fetch, its identity's
	// setup and its redirects included, down to the dialer.
	ctx = withScope(ctx, c.trust.scopeOf(t))
	h := newHeaderDeadline(ctx, c.timeout)
	// One attempt: retries and resumes (req.Offset) are package retry's.
	resp, err := c.fetchOnce(h.ctx, t, req)
	return h.finish(ctx, t, resp, err)
}

// fetchOnce makes one attempt, with the client's Authorization when it
// brought one, else as cacheyd. When cacheyd cannot set up its own identity
// for the repository (the token server refuses it, say), its token can no
// longer be refreshed, or the registry refuses it (401, 403), it asks again
// anonymously, so that a refusal reaches the client as the registry's own
// answer and challenge, with which the client can authenticate by itself
// and retry with Authorization.
func (c *Client) fetchOnce(ctx context.Context, t target, req *oci.Request) (*oci.Response, error) {
	if resp, ok := c.fromLocation(ctx, t, req); ok {
		return resp, nil
	}
	if req.Authorization != "" {
		rt := forwardAuth{inner: c.rt, host: t.base.Host, authorization: req.Authorization}
		return c.do(ctx, rt, t, req)
	}
	id, err := c.ids.get(ctx, t)
	if err != nil {
		if err := c.transportFailure(ctx, t, err, isSetupAnswer); err != nil {
			return nil, err
		}
		return c.do(ctx, c.rt, t, req)
	}
	resp, err := c.send(ctx, id.rt, t, req)
	if err != nil {
		if err := c.transportFailure(ctx, t, err, isTokenAnswer); err != nil {
			return nil, err
		}
		c.ids.forget(id)
		return c.do(ctx, c.rt, t, req)
	}
	if oci.RefusedStatus(resp.StatusCode) {
		// Refused as cacheyd. The client must see what the registry tells
		// an anonymous client: its challenge names the realm and scope the
		// client needs, and no trace of cacheyd's token or credentials
		// (error="insufficient_scope", a 403 for the wrong user) remains.
		discard(resp)
		return c.do(ctx, c.rt, t, req)
	}
	return c.answer(t, req, resp)
}

// discard reads a little of a response that is not passed on, so that its
// connection can be reused, and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBody))
	resp.Body.Close()
}

// do sends req through rt and maps the answer.
func (c *Client) do(ctx context.Context, rt http.RoundTripper, t target, req *oci.Request) (*oci.Response, error) {
	resp, err := c.send(ctx, rt, t, req)
	if err != nil {
		return nil, c.transportFailure(ctx, t, err, func(error) bool { return false })
	}
	return c.answer(t, req, resp)
}

// send builds the HTTP request for req and sends it, following redirects.
func (c *Client) send(ctx context.Context, rt http.RoundTripper, t target, req *oci.Request) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, req.Method, t.url(req), nil)
	if err != nil {
		return nil, err
	}
	// Raw bytes as stored: the digest is of the stored bytes, and a
	// transparent decompression would change them.
	hreq.Header.Set("Accept-Encoding", "identity")
	switch req.Kind {
	case oci.KindManifest:
		accept := req.Accept
		if len(accept) == 0 {
			accept = oci.ManifestMediaTypes
		}
		hreq.Header.Set("Accept", strings.Join(accept, ", "))
	case oci.KindReferrers:
		hreq.Header.Set("Accept", string(types.OCIImageIndex))
	case oci.KindTags:
		hreq.Header.Set("Accept", "application/json")
	}
	if r := req.RangeHeader(); r != "" {
		hreq.Header.Set("Range", r)
	}
	hc := &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	return hc.Do(hreq)
}

// transportFailure classifies an error that came instead of a response. It
// returns nil when the error is an answer from upstream that an anonymous
// request may turn into the registry's own error (answered reports which
// errors are), a policy refusal as it is, the caller's own cancellation
// wrapped, and anything else as oci.ErrUpstreamUnavailable.
func (c *Client) transportFailure(ctx context.Context, t target, err error, answered func(error) bool) error {
	if e, ok := oci.AsError(err); ok {
		return e
	}
	if ctx.Err() != nil {
		return fmt.Errorf("upstream %s: %w", t.registry, err)
	}
	if answered(err) {
		c.log.Debug("fetching as cacheyd failed; asking anonymously", "registry", t.registry, "err", err)
		return nil
	}
	return fmt.Errorf("upstream %s: %w: %w", t.registry, oci.ErrUpstreamUnavailable, err)
}

// isSetupAnswer reports whether a failed identity setup got as far as an
// answer: a status from the ping or the token server, or a challenge or
// token response cacheyd cannot use. Only failures to connect at all (which
// net/http reports as *url.Error) are not.
func isSetupAnswer(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return true
	}
	var uerr *url.Error
	return !errors.As(err, &uerr)
}

// isTokenAnswer reports whether a fetch with cacheyd's identity failed
// because the token server refused to refresh the token.
func isTokenAnswer(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr)
}
