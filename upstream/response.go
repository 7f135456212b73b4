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
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, oci.ErrorFromResponse(req.Kind, resp)
	}
	c.remember(t, req, resp)
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
			resp.Body.Close()
			return nil, fmt.Errorf("upstream %s: %w: %w: %s %s: %w", t.registry, oci.ErrUpstreamUnavailable, errBadResponse,
				req.Method, t.url(req.Kind, req.Reference), err)
		}
		out.Offset, out.End, out.Size = r.Start, r.End+1, r.Size
	}
	if req.Kind == oci.KindManifest && out.Size > oci.MaxManifestSize {
		resp.Body.Close()
		return nil, errManifestTooLarge(t, out.Size)
	}
	c.labels.served(t.registry)
	if req.Method == http.MethodHead {
		resp.Body.Close()
		return out, nil
	}
	out.Body = &countingBody{ReadCloser: resp.Body, n: c.metrics.UpstreamBytes.WithLabelValues(c.labels.of(t.registry))}
	if req.Kind == oci.KindManifest {
		// The size may be unknown (chunked) or a lie; the bytes are
		// counted too, whoever reads them: a fill, a tag lookup or a
		// pass-through straight to the client.
		out.Body = &manifestBody{ReadCloser: out.Body, left: oci.MaxManifestSize - out.Offset, t: t}
	}
	return out, nil
}

// errManifestTooLarge refuses a manifest over oci.MaxManifestSize, the
// limit containerd applies too: 413 SIZE_INVALID, as the cache answers a
// manifest that turns out larger while it is read.
func errManifestTooLarge(t target, size int64) *oci.Error {
	msg := fmt.Sprintf("upstream %s: manifest exceeds %d bytes", t.registry, oci.MaxManifestSize)
	if size >= 0 {
		msg = fmt.Sprintf("upstream %s: manifest of %d bytes exceeds %d", t.registry, size, oci.MaxManifestSize)
	}
	return oci.ErrTooLarge(msg)
}

// manifestBody fails a manifest body that goes on past
// oci.MaxManifestSize, after passing on the bytes up to the limit.
type manifestBody struct {
	io.ReadCloser
	left int64 // bytes still allowed
	t    target
}

func (b *manifestBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: the body must end here.
		var probe [1]byte
		n, err := b.ReadCloser.Read(probe[:])
		if n > 0 {
			return 0, errManifestTooLarge(b.t, -1)
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
