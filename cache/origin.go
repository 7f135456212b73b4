package cache

import (
	"context"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/retry"
)

// Origin fetches content the cache does not hold: an upstream registry, or
// another cache. Errors that are a registry's answer are *oci.Error; failing
// to reach the registry at all wraps oci.ErrUpstreamUnavailable (and
// oci.ErrUpstreamTimeout too when it accepted the request but did not
// answer in time).
type Origin interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Router is what an Origin that fetches from several places adds (a
// cacheyd with peers or a parent): it decides, once per piece of the
// cache's work, where that work fetches from. The cache asks when it keys a
// fill or a shared lookup (sourceFor); a fill keeps the Route for every
// request it makes, its chunks and its resumes, and a lookup for its
// requests, their retries and the one with a client's credentials, so that
// what the route learns (which source answered, which failed) holds for
// the whole work.
type Router interface {
	Route(req *oci.Request) Route
}

// Route is where one piece of work fetches from, decided once.
type Route interface {
	Origin
	// Key names the route ("" for the origin's own way). The cache shares
	// work (a fill, a tag lookup) only between requests routed under one
	// key, so that a request the origin fetches itself (a peer's, which
	// must make no second hop) is never served by work that waits for
	// another place, and a request the origin sends to this very cache (a
	// replica asking itself once its owner failed) never joins the fill
	// that waits for its answer. Every request of the work carries the key
	// (oci.Request.Route).
	Key() string
}

// KeptElsewhere is what a Route may add: whether the content it brought
// last came from a place that keeps it and tells its own keepers (another
// replica of the cluster, which committed it itself; a keeper read back).
// The cache then does not tell its keepers of the commit: a bucket behind
// a cluster gets each object from the replica that fetched it, not once
// per replica that served it.
type KeptElsewhere interface {
	KeptElsewhere() bool
}

// keptElsewhere reports whether o is a route whose content came from a
// place that keeps it.
func keptElsewhere(o Origin) bool {
	k, ok := o.(KeptElsewhere)
	return ok && k.KeptElsewhere()
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
	resp, err = origin.Fetch(ctx, req.AsCacheyd())
	return c.asClient(ctx, origin, req, resp, err)
}

// asClient is the second half of fetchAs, for an answer obtained as
// cacheyd elsewhere (a shared tag lookup): on cacheyd's refusal, req is
// asked again with its own credentials, if it has any.
func (c *Cache) asClient(ctx context.Context, origin Origin, req *oci.Request, resp *oci.Response, err error) (*oci.Response, bool, error) {
	if !oci.Refused(err) || req.Authorization == "" {
		return resp, false, err
	}
	resp, err = origin.Fetch(ctx, req)
	return resp, true, err
}

// Refuter is what a Route may add: told that the bytes it brought for req
// failed verification as a whole (a fill fetched in ranges is verified
// only at its end, long after each range was taken), it holds the source
// that sent them to account, so that the next fill of that digest does not
// go back to it.
type Refuter interface {
	Refute(req *oci.Request)
}

// source is what a piece of work fetches through: its route and the
// route's key.
type source struct {
	key  string
	from Origin
}

// sourceFor decides, once, where the work for req fetches from: the
// origin's route when it routes, else the origin itself under the key "".
func (c *Cache) sourceFor(req *oci.Request) source {
	if r, ok := c.origin.(Router); ok {
		rt := r.Route(req)
		return source{key: rt.Key(), from: rt}
	}
	return source{from: c.origin}
}

// withRetries is what a fill fetches through, and a lookup retries
// through: its source with the retries (package retry), which resume a cut
// body through the same route.
func (c *Cache) withRetries(src source) *retry.Origin {
	return retry.New(src.from, retryConfig(c.cfg))
}

// retryConfig is the retries of fills and of lookups with no answer kept.
func retryConfig(cfg Config) retry.Config {
	return retry.Config{Retries: cfg.FillRetries, Backoff: cfg.RetryBackoff, IdleTimeout: cfg.FillIdleTimeout, Logger: cfg.Logger}
}
