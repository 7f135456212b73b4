package cache

import (
	"context"
	"net/http"

	"github.com/cacheyd/cacheyd/oci"
)

// Origin fetches content the cache does not hold: an upstream registry, or
// another cache. Errors that are a registry's answer are *oci.Error; failing
// to reach the registry at all wraps oci.ErrUpstreamUnavailable (and
// oci.ErrUpstreamTimeout too when it accepted the request but did not
// answer in time).
type Origin interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Router is what an Origin that sends requests to one of several places
// may add: a cluster's origin asks the replica that owns a key, or fetches
// itself. Route names the place a request would go to now ("" for the
// origin's own way). The cache shares work (a fill, a tag lookup) only
// between requests routed to the same place, so that a request the origin
// fetches itself (a peer's, which must make no second hop) is never served
// by work that waits for another place, and a request the origin sends to
// this very cache (a replica asking itself once its owner failed) never
// joins the fill that waits for its answer. The route a fill or lookup was
// keyed by goes to the origin with each of its requests (Request.Route).
type Router interface {
	Route(req *oci.Request) string
}

// OriginFunc adapts a function to Origin.
type OriginFunc func(ctx context.Context, req *oci.Request) (*oci.Response, error)

// Fetch calls f.
func (f OriginFunc) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	return f(ctx, req)
}

// The credential fallback, written once: the cache fetches as cacheyd, and
// when the origin refuses cacheyd and the request carries the client's own
// Authorization, it asks again with that. What comes back that way is the
// client's, not the cache's: it is either marked private (fills) or not
// kept at all.

// fetchAs fetches req with origin as cacheyd, then with the client's
// credentials on a refusal. private reports that the answer came only with
// the client's credentials.
func (c *Cache) fetchAs(ctx context.Context, origin Origin, req *oci.Request) (resp *oci.Response, private bool, err error) {
	up := *req
	up.Authorization = ""
	resp, err = origin.Fetch(ctx, &up)
	return c.asClient(ctx, origin, req, resp, err)
}

// asClient is the second half of fetchAs, for an answer obtained as
// cacheyd elsewhere (a shared tag lookup): on cacheyd's refusal, req is
// asked again with its own credentials, if it has any.
func (c *Cache) asClient(ctx context.Context, origin Origin, req *oci.Request, resp *oci.Response, err error) (*oci.Response, bool, error) {
	if !refused(err) || req.Authorization == "" {
		return resp, false, err
	}
	resp, err = origin.Fetch(ctx, req)
	return resp, true, err
}

// route is where the origin would send req now: Router's answer, or "".
func (c *Cache) route(req *oci.Request) string {
	if r, ok := c.origin.(Router); ok {
		return r.Route(req)
	}
	return ""
}

// refused reports whether the origin refused the identity it was asked with.
func refused(err error) bool {
	e, ok := oci.AsError(err)
	return ok && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}
