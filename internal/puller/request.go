package puller

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/cacheyd/cacheyd/oci"
)

// acceptManifests is the Accept header of every manifest request:
// containerd's list, so that the answer is the manifest as stored.
var acceptManifests = strings.Join(oci.ManifestMediaTypes, ", ")

// maxRedirects bounds the redirects followed for one request.
const maxRedirects = 5

// do sends one request for repo's kind/ref and returns the response when
// its status is 200 (or 206 for a Range request); any other answer is a
// *StatusError. With Tokens it answers a Bearer challenge once. It follows
// redirects, sending Authorization only to the host it was sent to first.
func (p *Puller) do(ctx context.Context, method, repo string, kind Kind, ref, rng string) (*http.Response, error) {
	u := p.Base + "/v2/" + repo + "/" + string(kind) + "/" + ref
	if p.Namespace != "" {
		u += "?ns=" + url.QueryEscape(p.Namespace)
	}
	for challenged := false; ; challenged = true {
		resp, err := p.send(ctx, method, u, kind, rng, p.token(repo))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusOK || rng != "" && resp.StatusCode == http.StatusPartialContent {
			return resp, nil
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		serr := refusal(method, repo, kind, ref, u, resp)
		if serr.Status != http.StatusUnauthorized || !p.Tokens || challenged || !bearer(challenge) {
			return nil, serr
		}
		if err := p.authorize(ctx, repo, challenge); err != nil {
			return nil, fmt.Errorf("%s %s %s: %w", method, kind.noun(), short(ref), err)
		}
	}
}

// send sends a request to u and follows redirects.
func (p *Puller) send(ctx context.Context, method, u string, kind Kind, rng, token string) (*http.Response, error) {
	c := p.noRedirects()
	first, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	for range maxRedirects + 1 {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, err
		}
		if kind == KindManifest {
			req.Header.Set("Accept", acceptManifests)
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if token != "" && req.URL.Host == first.Host {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return resp, nil
		}
		resp.Body.Close()
		next, err := req.URL.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("%s %s: redirect to %q: %w", method, u, loc, err)
		}
		u = next.String()
	}
	return nil, fmt.Errorf("%s %s: more than %d redirects", method, u, maxRedirects)
}

// noRedirects is the Client, made not to follow redirects itself: send
// follows them, so that it decides where Authorization goes.
func (p *Puller) noRedirects() *http.Client {
	c := http.DefaultClient
	if p.Client != nil {
		c = p.Client
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}
