package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/oci"
)

// client asks another cacheyd (a peer or the parent) over its /v2 API, as
// containerd would ask it, plus the hop header for a peer.
type client struct {
	hc    *http.Client
	token string
}

func newClient(cfg Config) *client {
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
	return &client{
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// cacheyd never redirects; a redirect is no answer to trust.
			return http.ErrUseLastResponse
		}},
		token: cfg.Token,
	}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// errPeer marks a failure of the peer (or parent) itself, as opposed to an
// answer it passed on: unreachable, a timeout, a 5xx, a refusal of our
// token, an answer that makes no sense. The next source is asked.
var errPeer = errors.New("peer failed")

// errDown marks a peer that could not be reached at all (or refused our
// token): beside asking the next source, it is skipped for the backoff.
// A 5xx is not: the peer is up, and only passed on upstream's trouble.
var errDown = fmt.Errorf("%w: unreachable", errPeer)

// answer is a peer's answer: the response, and where the peer's own
// answer came from (oci.SourceHeader).
type answer struct {
	resp   *oci.Response
	source string
}

// fetch asks base ("http://host:port") for req. hop marks the request as a
// peer's. Errors are *oci.Error for an answer to pass on (404, a registry's
// 401 challenge, 429), or wrap errPeer.
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
	if req.Authorization != "" {
		h.Set("Authorization", req.Authorization)
	}
	if hop {
		h.Set(oci.HopHeader, "1")
	}
	if c.token != "" {
		h.Set(oci.TokenHeader, c.token)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, fmt.Errorf("%s: %w", base, context.Cause(ctx))
		}
		return answer{}, fmt.Errorf("%w: %s: %w", errDown, base, err)
	}
	a, err := c.read(base, req, resp, read)
	if err != nil {
		resp.Body.Close()
	}
	return a, err
}

// read maps a peer's response; on error the caller closes the body.
func (c *client) read(base string, req *oci.Request, resp *http.Response, read prometheus.Counter) (answer, error) {
	switch {
	case resp.StatusCode >= 500:
		e := oci.ErrorFromResponse(req.Kind, resp)
		return answer{}, fmt.Errorf("%w: %s answered %w", errPeer, base, e)
	case resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == oci.TokenHeader+` realm="cacheyd"`:
		// The peer's own guard: our token is not one it takes. That is a
		// misconfiguration, not the registry's answer for the client.
		return answer{}, fmt.Errorf("%w: %s refused the client token", errDown, base)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return answer{}, oci.ErrorFromResponse(req.Kind, resp)
	}
	out := &oci.Response{Size: resp.ContentLength, End: resp.ContentLength}
	if d, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil {
		out.Digest = d
	}
	if req.Kind == oci.KindManifest {
		out.MediaType = resp.Header.Get("Content-Type")
	}
	if resp.StatusCode == http.StatusPartialContent && req.Method == http.MethodGet {
		r, err := oci.ParseContentRange(resp.Header.Get("Content-Range"))
		if err == nil {
			err = r.Answers(req)
		}
		if err != nil {
			return answer{}, fmt.Errorf("%w: %s: %w", errPeer, base, err)
		}
		out.Offset, out.End, out.Size = r.Start, r.End+1, r.Size
	}
	a := answer{resp: out, source: resp.Header.Get(oci.SourceHeader)}
	if req.Method == http.MethodHead {
		resp.Body.Close()
		return a, nil
	}
	out.Body = &countingBody{ReadCloser: resp.Body, n: read}
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
