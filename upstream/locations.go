package upstream

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// Redirects are resolved once per blob, not per request. Registries send
// blob GETs to a CDN with a signed URL, and a fill that fetches a large blob
// as many ranged requests would otherwise pay the registry's round trip,
// token and redirect for each. The URL a blob GET was last redirected to is
// remembered for locationTTL, per registry, digest and credential (a URL
// signed for one client's credentials is never used for another's), and
// the next GET of that blob goes there directly, through the same dial
// policy and without any Authorization. If the CDN does not answer it with
// content (an expired signature, say), it is forgotten and the request goes
// to the registry as usual.
const (
	locationTTL  = time.Minute
	maxLocations = 4096
)

type locationKey struct {
	registry string
	digest   oci.Digest
	cred     [sha256.Size]byte
}

type location struct {
	u     *url.URL
	until time.Time
}

// locations remembers where blobs were redirected to.
type locations struct {
	mu sync.Mutex // guards m
	m  map[locationKey]location
}

func keyOf(t target, req *oci.Request) locationKey {
	return locationKey{t.registry, req.Reference.Digest, sha256.Sum256([]byte(req.Authorization))}
}

func (l *locations) get(k locationKey) *url.URL {
	l.mu.Lock()
	defer l.mu.Unlock()
	loc, ok := l.m[k]
	if !ok || time.Now().After(loc.until) {
		delete(l.m, k)
		return nil
	}
	return loc.u
}

func (l *locations) put(k locationKey, u *url.URL) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= maxLocations {
		l.m = map[locationKey]location{} // a lost location costs a redirect
	}
	l.m[k] = location{u: u, until: time.Now().Add(locationTTL)}
}

func (l *locations) forget(k locationKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, k)
}

// remember records where a blob GET ended up, when that is another host.
func (c *Client) remember(t target, req *oci.Request, resp *http.Response) {
	if req.Kind != oci.KindBlob || req.Method != http.MethodGet || resp.Request == nil {
		return
	}
	if u := resp.Request.URL; u.Host != t.base.Host {
		c.locations.put(keyOf(t, req), u)
	}
}

// fromLocation asks for a blob at the URL it was last redirected to. It
// reports false, having made no answer, when there is none or the URL no
// longer serves the content.
func (c *Client) fromLocation(ctx context.Context, t target, req *oci.Request) (*oci.Response, bool) {
	if req.Kind != oci.KindBlob || req.Method != http.MethodGet {
		return nil, false
	}
	k := keyOf(t, req)
	u := c.locations.get(k)
	if u == nil {
		return nil, false
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false
	}
	hreq.Header.Set("Accept-Encoding", "identity")
	if r := req.RangeHeader(); r != "" {
		hreq.Header.Set("Range", r)
	}
	hc := &http.Client{Transport: c.rt, CheckRedirect: checkRedirect}
	resp, err := hc.Do(hreq)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		if err == nil {
			discard(resp)
		}
		c.locations.forget(k)
		return nil, false
	}
	out, err := c.answer(t, req, resp)
	if err != nil {
		c.locations.forget(k)
		return nil, false
	}
	return out, true
}
