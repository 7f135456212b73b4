package cache

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/retry"
)

// Lookups are what the cache asks upstream about mutable things: a tag
// (tags.go) and a listing (listing.go). Both are asked as cacheyd, once for
// every request that wants the same answer at the same time, kept for
// TagTTL, and answered from what was kept, up to TagStaleMax past the TTL,
// while upstream cannot answer. The rules they share are written here once.

// shared runs lookup once for every concurrent caller of key in g, on the
// cache's own context bounded by tagTimeout, so that no one client can
// cancel what the others wait for. Each caller waits for the answer at most
// AnswerTimeout (errAnswerTimeout) or until its ctx ends (its cause); the
// lookup goes on without those that stopped waiting, and whatever it keeps
// serves the next.
func (c *Cache) shared(ctx context.Context, g *singleflight.Group, key string, lookup func(ctx context.Context) (any, error)) (any, error) {
	// Stops within tagTimeout, or when Close cancels c.ctx.
	ch := g.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(c.ctx, tagTimeout)
		defer cancel()
		return lookup(ctx)
	})
	wait := time.NewTimer(c.cfg.AnswerTimeout)
	defer wait.Stop()
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-wait.C:
		return nil, errAnswerTimeout
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// fetchLookup asks the origin for req on behalf of a lookup. With a last
// answer to fall back on (known), one try: the stale answer is better
// served at once. Without one, what a retry can cure (5xx, 429) is retried
// as fills are, rather than failing every node that asked at that moment.
// An origin that cannot be reached at all is answered at once, as a fill's
// is: the waiting clients try their next host.
func (c *Cache) fetchLookup(ctx context.Context, req *oci.Request, known bool) (*oci.Response, error) {
	resp, err := c.origin.Fetch(ctx, req)
	unreachable := errors.Is(err, oci.ErrUpstreamUnavailable) && !errors.Is(err, oci.ErrUpstreamTimeout)
	if err != nil && !known && !unreachable && retry.Retryable(err) {
		resp, err = c.retrying.Fetch(ctx, req)
	}
	return resp, err
}

// servesStale reports whether a last answer upstream confirmed at checked
// may stand in for err: upstream could not answer (rather than answered
// no), and the answer is within TagStaleMax past its TTL.
func (c *Cache) servesStale(checked time.Time, err error) bool {
	return stalable(err) && c.cfg.TagStaleMax > 0 && time.Since(checked) < c.cfg.TagTTL+c.cfg.TagStaleMax
}

// stalable reports whether err is upstream being unable to answer, as
// opposed to upstream answering no.
func stalable(err error) bool {
	if errors.Is(err, oci.ErrUpstreamUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	e, ok := oci.AsError(err)
	return ok && (e.Status >= 500 || e.Status == http.StatusTooManyRequests)
}
