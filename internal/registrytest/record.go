package registrytest

import (
	"context"
	"net/http"
	"strings"
	"sync"
)

// Which server answered a request (Request.Host).
const (
	HostRegistry = "registry"
	HostCDN      = "cdn"
)

// What a request asked for (Request.Kind).
const (
	KindBase      = "base"      // GET /v2/
	KindManifest  = "manifest"  // /v2/<name>/manifests/<ref>
	KindBlob      = "blob"      // /v2/<name>/blobs/<digest>
	KindToken     = "token"     // the token endpoint
	KindCDN       = "cdn"       // a blob download on the CDN host
	KindTags      = "tags"      // /v2/<name>/tags/list
	KindReferrers = "referrers" // /v2/<name>/referrers/<digest>
	KindOther     = "other"     // uploads, the catalog, anything else
)

// Request is what the fake registry recorded about one request, taken as it
// arrived (before hooks and authorization).
type Request struct {
	Host          string // HostRegistry or HostCDN
	Method        string
	Path          string
	Query         string // raw query string
	Kind          string // one of the Kind constants
	Name          string // repository name, empty when the path has none
	Ref           string // tag or digest from the path, empty when none
	Authorization string
	Range         string
	Accept        string // all Accept headers joined with ", "
}

// recorder keeps every request in arrival order.
type recorder struct {
	mu      sync.Mutex    // guards reqs and changed
	reqs    []Request     // in arrival order
	changed chan struct{} // closed and replaced whenever reqs grows
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{})}
}

func (rc *recorder) add(r Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = append(rc.reqs, r)
	close(rc.changed)
	rc.changed = make(chan struct{})
}

// classify describes req as served by host.
func classify(req *http.Request, host string) Request {
	r := Request{
		Host:          host,
		Method:        req.Method,
		Path:          req.URL.Path,
		Query:         req.URL.RawQuery,
		Authorization: req.Header.Get("Authorization"),
		Range:         req.Header.Get("Range"),
		Accept:        strings.Join(req.Header.Values("Accept"), ", "),
	}
	if host == HostCDN {
		r.Kind = KindCDN
		r.Ref = strings.TrimPrefix(req.URL.Path, cdnPrefix)
		return r
	}
	r.Kind, r.Name, r.Ref = parsePath(req.URL.Path)
	return r
}

// parsePath splits a distribution API path into kind, repository name and
// reference. Only paths under /v2/ carry a name.
func parsePath(p string) (kind, name, ref string) {
	switch p {
	case tokenPath:
		return KindToken, "", ""
	case "/v2", "/v2/":
		return KindBase, "", ""
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return KindOther, "", ""
	}
	c := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	n := len(c)
	join := func(k int) string { return strings.Join(c[:k], "/") }
	switch {
	case n >= 4 && c[n-3] == "blobs" && c[n-2] == "uploads":
		return KindOther, join(n - 3), ""
	case n >= 3 && c[n-2] == "blobs" && c[n-1] == "uploads":
		return KindOther, join(n - 2), ""
	case n >= 3 && c[n-2] == "manifests":
		return KindManifest, join(n - 2), c[n-1]
	case n >= 3 && c[n-2] == "blobs":
		return KindBlob, join(n - 2), c[n-1]
	case n >= 3 && c[n-2] == "tags" && c[n-1] == "list":
		return KindTags, join(n - 2), ""
	case n >= 3 && c[n-2] == "referrers":
		return KindReferrers, join(n - 2), c[n-1]
	}
	return KindOther, "", ""
}

// Requests returns a copy of every request recorded since New or the last
// Reset, in arrival order.
func (r *Registry) Requests() []Request {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	out := make([]Request, len(r.rec.reqs))
	copy(out, r.rec.reqs)
	return out
}

// Count returns how many recorded requests have this method, kind and ref;
// an empty string matches anything.
func (r *Registry) Count(method, kind, ref string) int {
	return r.CountMatch(On(method, kind, ref))
}

// CountMatch returns how many recorded requests m matches (nil matches all).
func (r *Registry) CountMatch(m Match) int {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	n := 0
	for _, q := range r.rec.reqs {
		if m == nil || m(q) {
			n++
		}
	}
	return n
}

// Wait blocks until at least n recorded requests match m (nil matches all),
// or ctx ends. Requests are recorded as they arrive, so this lets a test
// know a request reached the registry without sleeping.
func (r *Registry) Wait(ctx context.Context, m Match, n int) error {
	for {
		r.rec.mu.Lock()
		have := 0
		for _, q := range r.rec.reqs {
			if m == nil || m(q) {
				have++
			}
		}
		changed := r.rec.changed
		r.rec.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Reset forgets every recorded request; counts start again from zero, and
// so does the pull accounting (a new rate limit window).
func (r *Registry) Reset() {
	r.rec.mu.Lock()
	r.rec.reqs = nil
	r.rec.mu.Unlock()
	r.pulls.reset()
}
