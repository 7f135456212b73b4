package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/oci"
)

// MaxErrorBody bounds how much of an upstream error body is read and kept
// to be passed on.
const MaxErrorBody = oci.MaxErrorBody

var (
	errTooManyRedirects = errors.New("stopped after 10 redirects")
	errDowngrade        = errors.New("refusing a redirect from https to http")
	// errBadResponse marks a 2xx answer cacheyd cannot use.
	errBadResponse = errors.New("unusable response")
)

// answer turns upstream's response into a Response or an *oci.Error. It owns
// resp.Body: it is either handed on in the Response or closed.
func (c *Client) answer(t target, req *oci.Request, resp *http.Response) (*oci.Response, error) {
	c.budgets.observe(t.registry, req, resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		e := oci.ErrorFromResponse(req.Kind, resp)
		e.Upstream = true // the registry's own answer
		return nil, e
	}
	c.remember(t, req, resp)
	out := &oci.Response{Size: resp.ContentLength, End: resp.ContentLength}
	if d, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil {
		out.Digest = d
	}
	if req.Kind == oci.KindManifest || req.Kind.IsListing() {
		out.MediaType = resp.Header.Get("Content-Type")
	}
	if req.Kind.IsListing() {
		// Passed on to the client (the server makes the Link point back
		// at cacheyd): only values that are safe as header values.
		out.Link = headerValue(resp.Header.Get("Link"))
		out.FiltersApplied = headerValue(resp.Header.Get("OCI-Filters-Applied"))
	}
	if resp.StatusCode == http.StatusPartialContent && req.Method == http.MethodGet {
		r, err := oci.ParseContentRange(resp.Header.Get("Content-Range"))
		if err == nil {
			err = r.Answers(req)
		}
		if err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("upstream %s: %w: %w: %s %s: %w", t.registry, oci.ErrUpstreamUnavailable, errBadResponse,
				req.Method, t.url(req), err)
		}
		out.Offset, out.End, out.Size = r.Start, r.End+1, r.Size
	}
	limit, bounded := bodyLimit(req.Kind)
	if bounded && out.Size > limit {
		resp.Body.Close()
		return nil, errTooLarge(t, req.Kind, out.Size)
	}
	c.labels.served(t.registry)
	if req.Method == http.MethodHead {
		resp.Body.Close()
		return out, nil
	}
	out.Body = &countingBody{ReadCloser: resp.Body, n: c.metrics.UpstreamBytes.WithLabelValues(c.labels.of(t.registry))}
	if bounded {
		// The size may be unknown (chunked) or a lie; the bytes are
		// counted too, whoever reads them: a fill, a tag lookup, a
		// listing or a pass-through straight to the client.
		out.Body = &boundedBody{ReadCloser: out.Body, left: limit - out.Offset, t: t, kind: req.Kind}
	}
	return out, nil
}

// bodyLimit is the largest body of kind cacheyd reads: a manifest up to
// oci.MaxManifestSize, the limit containerd applies too, a listing up to
// oci.MaxListingSize; blobs are not bounded.
func bodyLimit(kind oci.Kind) (int64, bool) {
	switch {
	case kind == oci.KindManifest:
		return oci.MaxManifestSize, true
	case kind.IsListing():
		return oci.MaxListingSize, true
	}
	return 0, false
}

// errTooLarge refuses a manifest or listing over its bodyLimit: 413
// SIZE_INVALID, as the cache answers a manifest that turns out larger while
// it is read. A size of -1 is one found out while reading.
func errTooLarge(t target, kind oci.Kind, size int64) *oci.Error {
	limit, _ := bodyLimit(kind)
	msg := fmt.Sprintf("upstream %s: %s exceeds %d bytes", t.registry, kind, limit)
	if size >= 0 {
		msg = fmt.Sprintf("upstream %s: %s of %d bytes exceeds %d", t.registry, kind, size, limit)
	}
	return oci.ErrTooLarge(msg)
}

// boundedBody fails a manifest or listing body that goes on past its
// bodyLimit, after passing on the bytes up to the limit.
type boundedBody struct {
	io.ReadCloser
	left int64 // bytes still allowed
	t    target
	kind oci.Kind
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: the body must end here.
		var probe [1]byte
		n, err := b.ReadCloser.Read(probe[:])
		if n > 0 {
			return 0, errTooLarge(b.t, b.kind, -1)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// countingBody counts the bytes read from upstream as they are read.
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

// maxPassedHeader bounds an upstream header value passed on to clients.
const maxPassedHeader = 4 << 10

// headerValue is an upstream header value to pass on, or "" when it is too
// long or holds control characters.
func headerValue(s string) string {
	if len(s) > maxPassedHeader || !validHeaderValue(s) {
		return ""
	}
	return s
}
