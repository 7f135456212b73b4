package registrytest

import (
	"net/http"
	"sync/atomic"
)

// Hook sees every request to the registry and the CDN after it is recorded
// and before anything else (authorization, redirects, the token endpoint).
// It returns true when it answered the request itself. A hook that wants the
// normal answer, perhaps through a wrapped writer, calls Pass and returns
// true. Hooks run concurrently.
type Hook func(w http.ResponseWriter, req *http.Request) bool

// SetHook makes h see every request to the registry and the CDN; nil
// removes it. Combine several with Chain.
func (r *Registry) SetHook(h Hook) {
	if h == nil {
		r.hook.Store(nil)
		return
	}
	r.hook.Store(&h)
}

// Chain runs hooks in order until one answers the request.
func Chain(hooks ...Hook) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		for _, h := range hooks {
			if h(w, req) {
				return true
			}
		}
		return false
	}
}

// Pass serves req as the registry would without a hook. Call it only from a
// Hook, with the request the hook was given.
func Pass(w http.ResponseWriter, req *http.Request) {
	c := callOf(req)
	c.reg.serve(w, req, c.req)
}

// Match selects requests by what was recorded about them. A nil Match
// matches every request.
type Match func(Request) bool

// On matches requests with this method, kind and ref; an empty string
// matches anything.
func On(method, kind, ref string) Match {
	return func(q Request) bool {
		return (method == "" || q.Method == method) &&
			(kind == "" || q.Kind == kind) &&
			(ref == "" || q.Ref == ref)
	}
}

// First matches the first n requests that m matches and nothing after. It
// counts every time it is asked, so give each hook its own and do not use it
// with Count or Wait.
func (m Match) First(n int) Match {
	var seen atomic.Int64
	return func(q Request) bool {
		return m.match(q) && seen.Add(1) <= int64(n)
	}
}

func (m Match) match(q Request) bool { return m == nil || m(q) }

// BlobBytes matches the GETs that carry the bytes of blob digest (any blob
// when digest is empty): on the CDN when Options.Redirect is set, on the
// registry otherwise. Use it to damage blob bodies rather than redirects.
func (r *Registry) BlobBytes(digest string) Match {
	if r.opts.Redirect {
		return On(http.MethodGet, KindCDN, digest)
	}
	return On(http.MethodGet, KindBlob, digest)
}

// Recorded returns what the registry recorded about req, a request a Hook
// was given: which host it reached, its kind, repository and reference.
func Recorded(req *http.Request) Request { return callOf(req).req }

// call is what a request's context carries so that hooks can see the
// recorded Request and Pass can continue serving.
type call struct {
	reg *Registry
	req Request
}

type callKey struct{}

func callOf(req *http.Request) *call {
	return req.Context().Value(callKey{}).(*call)
}

// matches reports whether m matches the recorded form of req.
func matches(m Match, req *http.Request) bool {
	return m.match(callOf(req).req)
}

// stopped waits for ch and reports true instead if req ends first: its
// client went away or the registry closed.
func stopped[T any](req *http.Request, ch <-chan T) bool {
	select {
	case <-ch:
		return false
	case <-req.Context().Done():
		return true
	case <-callOf(req).reg.done:
		return true
	}
}
