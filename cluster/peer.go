package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/oci"
)

// client asks another cacheyd (a peer or the parent) over its /v2 API, as
// containerd would ask it, plus the hop header and the proofs of the
// cluster secret for a peer.
type client struct {
	hc       *http.Client
	token    string
	keys     *peerauth.Keys // nil without a secret (a parent alone)
	instance string         // added to the Via chain; "" adds none
	idle     time.Duration  // oci.Response.Idle of the bodies
}

func newClient(cfg Config) (*client, error) {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       cfg.TLS,
		ResponseHeaderTimeout: cfg.HeaderTimeout,
		// Below the peers' own idle timeout (120s by default), so it is
		// this side that closes an idle connection, never racing a request.
		IdleConnTimeout: 90 * time.Second,
		// A burst asks one owner for many blobs at once.
		MaxIdleConnsPerHost: 64,
		// The bytes as stored: a digest is of them.
		DisableCompression: true,
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	c := &client{
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// cacheyd never redirects; a redirect is no answer to trust.
			return http.ErrUseLastResponse
		}},
		token: cfg.Token, instance: cfg.Instance, idle: cfg.BodyIdle,
	}
	if cfg.Secret != "" {
		k, err := peerauth.New(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.keys = k
	}
	return c, nil
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// errPeer marks a failure of the peer (or parent) itself, as opposed to an
// answer it passed on: unreachable, a timeout, a 5xx of its own, a refusal
// of our token, an answer that makes no sense. The next source is asked.
var errPeer = errors.New("peer failed")

// errDown marks a peer that could not be reached at all (or refused our
// token): beside asking the next source, it is skipped for the backoff.
// A 5xx of its own is not: the peer is up.
var errDown = fmt.Errorf("%w: unreachable", errPeer)

// errWrong marks an answer no cacheyd gives: a status other than content
// or an error (1xx, 3xx), a range that does not answer the request, a
// digest other than the one asked for, bytes that are not it. The peer is
// skipped for the backoff, and the next source asked.
var errWrong = fmt.Errorf("%w: an answer no cacheyd gives", errPeer)

// errUnproven marks an answer from a member without a valid proof of the
// cluster secret (peerauth.AnswerHeader): whatever it says (a tag's
// digest, a 200 to a credential check, content) is not believed. The
// member is skipped for the backoff, and the next source asked.
var errUnproven = fmt.Errorf("%w: answer not proven with the cluster secret", errPeer)

// errCycle marks a 508 Loop Detected: the cacheyd asked found its own
// instance among those the request passed through (oci.ViaHeader), so
// asking it leads back here. It is skipped for the backoff, and the next
// source asked.
var errCycle = fmt.Errorf("%w: a loop", errPeer)

// answer is a peer's answer: the response, and where the peer's own
// answer came from (oci.SourceHeader).
type answer struct {
	resp   *oci.Response
	source string
	// budget is the pull budget a member stated on its proven answer to
	// a manifest request, set whatever the answer was (its error too);
	// nil when it stated none, or none that is believed (budgetErr says
	// why).
	budget    *peerauth.Budget
	budgetErr error
}

// fetch asks base ("http://host:port") for req. hop marks the request as a
// peer's: it is proven with the cluster secret, the client's Authorization
// goes sealed (never in the clear), and the answer is believed only with
// the peer's proof. Errors are *oci.Error for an answer to pass on (404, a
// registry's 401 challenge, 429), wrap oci.ErrRelayed for upstream's
// failure that the peer relayed (an *oci.Error too), or wrap errPeer.
func (c *client) fetch(ctx context.Context, base string, req *oci.Request, hop bool, read prometheus.Counter) (answer, error) {
	u := base + "/v2/" + req.Repository + "/" + pathKind(req.Kind) + "/" + req.Reference.String() + "?ns=" + url.QueryEscape(req.Registry)
	hreq, err := http.NewRequestWithContext(ctx, req.Method, u, nil)
	if err != nil {
		return answer{}, fmt.Errorf("%w: %s: %w", errPeer, base, err)
	}
	h := hreq.Header
	h.Set("User-Agent", "cacheyd")
	h.Set("Accept-Encoding", "identity")
	if req.Kind == oci.KindManifest && len(req.Accept) > 0 {
		h.Set("Accept", strings.Join(req.Accept, ", "))
	}
	if r := req.RangeHeader(); r != "" {
		h.Set("Range", r)
	}
	if via := c.via(req.Via, !hop); via != "" {
		h.Set(oci.ViaHeader, via)
	}
	if c.token != "" {
		h.Set(oci.TokenHeader, c.token)
	}
	var proof peerauth.Proof
	switch {
	case hop:
		proof = c.prove(hreq, req.Authorization)
	case req.Authorization != "":
		// To the parent this replica is a client like any, and the
		// parent is the operator's.
		h.Set("Authorization", req.Authorization)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, fmt.Errorf("%s: %w", base, context.Cause(ctx))
		}
		return answer{}, fmt.Errorf("%w: %s: %w", errDown, base, err)
	}
	if hop {
		err = c.proven(base, proof, resp)
	}
	var a answer
	if err == nil {
		a, err = c.read(base, req, resp, hop, read)
	}
	if err != nil {
		resp.Body.Close()
	}
	if hop && req.Kind == oci.KindManifest && !errors.Is(err, errUnproven) {
		a.budget, a.budgetErr = c.budget(proof, resp)
	}
	return a, err
}

// budget reads the pull budget stated on a member's proven answer to a
// manifest request proven with p: nil when it states none, or one that is
// not proven for this request or cannot be read (the error).
func (c *client) budget(p peerauth.Proof, resp *http.Response) (*peerauth.Budget, error) {
	h := resp.Header.Get(peerauth.BudgetHeader)
	if h == "" {
		return nil, nil
	}
	b, err := c.keys.VerifyBudget(p, h)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// via is the Via chain of a request that came through ids, with this
// cacheyd's own instance when it goes to the parent. A peer's request
// needs none: it is never forwarded to a peer again, and a replica may
// ask itself as a peer; it carries the chain on, so that a loop through
// the peer's parent is still found.
func (c *client) via(ids []string, parent bool) string {
	if parent && c.instance != "" {
		ids = append(slices.Clip(ids), c.instance)
	}
	return strings.Join(ids, ",")
}

// prove makes hreq a peer's request: the hop header, authorization sealed
// if any, and the proof over all of it. It returns the proof, which the
// answer must be proven over.
func (c *client) prove(hreq *http.Request, authorization string) peerauth.Proof {
	h := hreq.Header
	p := peerauth.NewProof(time.Now())
	uri := hreq.URL.RequestURI()
	h.Set(oci.HopHeader, "1")
	if authorization != "" {
		h.Set(peerauth.AuthorizationHeader, c.keys.Seal(p, uri, authorization))
	}
	h.Set(peerauth.ProofHeader, c.keys.Sign(p, peerauth.Request{Method: hreq.Method, URI: uri,
		Range: h.Get("Range"), Accept: h.Get("Accept"), Via: h.Get(oci.ViaHeader), Sealed: h.Get(peerauth.AuthorizationHeader)}))
	return p
}

// proven checks the answer's proof for the request proven with p.
func (c *client) proven(base string, p peerauth.Proof, resp *http.Response) error {
	a := peerauth.AnswerOf(resp.StatusCode, resp.Header, resp.ContentLength)
	if err := c.keys.VerifyAnswer(p, a, resp.Header.Get(peerauth.AnswerHeader)); err != nil {
		return fmt.Errorf("%w: %s answered %d: %w", errUnproven, base, resp.StatusCode, err)
	}
	return nil
}

// errNoAnswer marks a probe that got no answer at all (the member cannot
// be reached, or not yet).
var errNoAnswer = errors.New("no answer")

// probe asks the member at base to prove it holds the cluster secret.
func (c *client) probe(ctx context.Context, base string) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, base+peerauth.ProbePath, nil)
	if err != nil {
		return err
	}
	hreq.Header.Set("User-Agent", "cacheyd")
	p := peerauth.NewProof(time.Now())
	hreq.Header.Set(peerauth.ProofHeader, c.keys.Sign(p, peerauth.Request{Method: http.MethodGet, URI: peerauth.ProbePath}))
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	defer resp.Body.Close()
	// A short body, read so the connection is kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if err := c.proven(base, p, resp); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered the probe %d", base, resp.StatusCode)
	}
	return nil
}

// read maps a peer's response; on error the caller closes the body.
func (c *client) read(base string, req *oci.Request, resp *http.Response, hop bool, read prometheus.Counter) (answer, error) {
	status := resp.StatusCode
	relayed := resp.Header.Get(oci.RelayedHeader) == "1"
	switch {
	case status >= 200 && status <= 299:
		return c.content(base, req, resp, hop, read)
	case relayed && status >= 400:
		// Upstream's failure, after the peer's own attempts: the answer
		// for the client, neither retried here nor held against the peer.
		e := oci.ErrorFromResponse(req.Kind, resp)
		e.Upstream, e.Err = true, oci.ErrRelayed
		return answer{}, fmt.Errorf("cluster: %s relayed %w", base, e)
	case status == http.StatusLoopDetected:
		return answer{}, fmt.Errorf("%w: %s answered %d: the request came back to it", errCycle, base, status)
	case status < 400:
		// cacheyd never redirects, and answers no request with 1xx.
		return answer{}, fmt.Errorf("%w: %s answered %d", errWrong, base, status)
	case status >= 500:
		e := oci.ErrorFromResponse(req.Kind, resp)
		return answer{}, fmt.Errorf("%w: %s answered %w", errPeer, base, e)
	case status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == oci.TokenHeader+` realm="cacheyd"`:
		// The peer's own guard (a registry's challenge would be marked
		// relayed): our token is not one it takes. That is a
		// misconfiguration, not the registry's answer for the client.
		return answer{}, fmt.Errorf("%w: %s refused the client token", errDown, base)
	}
	return answer{}, oci.ErrorFromResponse(req.Kind, resp)
}

// content reads a 2xx answer: its digest, type, size and range, each
// checked against the request, and a body that is verified as it streams
// when it is meant to be a whole object of a known digest.
func (c *client) content(base string, req *oci.Request, resp *http.Response, hop bool, read prometheus.Counter) (answer, error) {
	wrong := func(format string, args ...any) (answer, error) {
		return answer{}, fmt.Errorf("%w: %s: %s", errWrong, base, fmt.Sprintf(format, args...))
	}
	out := &oci.Response{Size: resp.ContentLength, End: resp.ContentLength, Peer: hop, Idle: c.idle}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		d, err := oci.ParseDigest(h)
		if err != nil {
			return wrong("Docker-Content-Digest %.80q", h)
		}
		if req.Reference.IsDigest() && d != req.Reference.Digest {
			return wrong("answered %s for %s", d.Short(), req.Reference.Digest.Short())
		}
		out.Digest = d
	}
	if req.Kind == oci.KindManifest {
		out.MediaType = resp.Header.Get("Content-Type")
	}
	ranged := req.RangeHeader() != ""
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		if !ranged {
			return wrong("206 to a request for the whole object")
		}
		r, err := oci.ParseContentRange(resp.Header.Get("Content-Range"))
		if err == nil {
			err = r.Answers(req)
		}
		if err != nil {
			return wrong("%v", err)
		}
		out.Offset, out.End, out.Size = r.Start, r.End+1, r.Size
	case resp.StatusCode != http.StatusOK:
		return wrong("answered %d", resp.StatusCode)
	}
	a := answer{resp: out, source: resp.Header.Get(oci.SourceHeader)}
	if req.Method == http.MethodHead {
		resp.Body.Close()
		return a, nil
	}
	var body io.ReadCloser = &countingBody{ReadCloser: resp.Body, n: read}
	if resp.StatusCode == http.StatusOK && out.Digest != "" {
		// The whole object of a digest (the one asked for, or the one the
		// peer named for a tag): it cannot complete wrong, and bytes that
		// are not it fail the peer (watchedBody) rather than the object.
		body = oci.NewVerifyingReader(body, out.Digest, out.Size, nil)
	}
	out.Body = body
	return a, nil
}

// pathKind is the path segment of a kind of content.
func pathKind(k oci.Kind) string {
	if k == oci.KindManifest {
		return "manifests"
	}
	return "blobs"
}

// countingBody counts the bytes read as they are read.
type countingBody struct {
	io.ReadCloser
	n prometheus.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(float64(n))
	}
	return n, err
}
