package cache

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cacheyd/cacheyd/oci"
)

// Lookups are what the cache asks upstream about mutable things: a tag
// (tags.go) and a listing (listing.go). Both climb one ladder, written here
// once, and stop at the first rung that answers:
//
//  1. fresh: the answer kept, confirmed less than TagTTL ago;
//  2. shared: asked as cacheyd, once for every request that wants the same
//     answer at the same time, and kept;
//  3. as client: on cacheyd's refusal, asked again with the request's own
//     credentials, for that request alone, never kept nor shared;
//  4. stale: while upstream cannot answer, the answer kept, up to
//     TagStaleMax past the TTL, unless it is not this cacheyd's to serve
//     stale (a peer's tag);
//  5. error: upstream's own answer (a refusal), or its failure; a 404 is
//     counted apart as notfound, a routine answer rather than a fault.

// A rung is the step of the ladder that answered a lookup. Its name is the
// outcome the lookup's metric counts.
type rung string

const (
	rungFresh    rung = "fresh"
	rungShared   rung = "revalidated"
	rungAsClient rung = "passthrough"
	rungStale    rung = "stale"
	rungError    rung = "error"
	// rungNotFound is the error rung when upstream answered 404: the tag
	// or listing does not exist there, which is no fault of anyone's.
	rungNotFound rung = "notfound"
)

// failed is the rung a lookup that ended in err is counted on: notfound
// for upstream's 404, error for anything else.
func failed(err error) rung {
	if e, ok := oci.AsError(err); ok && e.Status == http.StatusNotFound {
		return rungNotFound
	}
	return rungError
}

// source is where an answer from r came from; kept is the source of an
// answer of the kind's table (SourceTags, SourceListings).
func (r rung) source(kept Source) Source {
	switch r {
	case rungShared:
		return SourceUpstream
	case rungAsClient:
		return SourcePassThrough
	}
	return kept
}

// A lookupKey names one answer: the key of its table, and (String) of the
// lookups in flight.
type lookupKey interface {
	comparable
	String() string
	// logAttrs names the answer in a log line.
	logAttrs() []any
}

// A keptAnswer is an entry of a lookup's table: the answer A as upstream
// last gave it to cacheyd.
type keptAnswer[A any] interface {
	answer() A
	// confirmed is when upstream last gave the answer.
	confirmed() time.Time
	// staleOK reports whether this cacheyd may serve the answer stale.
	staleOK() bool
}

// A ladder is what a kind of lookup gives the ladder: where its answers are
// kept and shared, and how it asks, reads and keeps one. Its functions take
// what they need as arguments, rather than closing over a request, so that
// a fresh answer costs no allocation.
type ladder[K lookupKey, E keptAnswer[A], A any] struct {
	what   string              // "tag", "listing": names it in the stale warning
	kept   *table[K, E]        // the last answers asked as cacheyd
	flight *singleflight.Group // one lookup in flight per key and route
	// ask is the request to ask as cacheyd for req, without its
	// Authorization, and without a route: climb decides it.
	ask func(c *Cache, req *oci.Request) *oci.Request
	// read turns the origin's answer to req into an answer.
	read func(c *Cache, req *oci.Request, resp *oci.Response) (A, error)
	// keep keeps an answer asked as cacheyd in kept, and leaves in *a what
	// the lookups that shared it get.
	keep func(c *Cache, key K, a *A, resp *oci.Response)
	// count counts a lookup of key by the rung that answered it.
	count func(c *Cache, key K, r rung)
	// countClientErrors counts a failure with the request's own
	// credentials as an "error" outcome (listings); without it, such a
	// failure is not counted (tags).
	countClientErrors bool
}

// climb answers req, whose answer key names, by the ladder l: the answer,
// the rung that gave it and the route the lookup was decided on (none for
// a fresh answer), or the error of the error rung (the cause of ctx once
// it ends, counted on no rung).
//
// A lookup that asks decides its route once, as a fill does (sourceFor):
// its shared request, its retries and the request with the client's own
// credentials all go through it, and so may a request that follows from
// its answer (a digest-less tag's GET). Lookups of one key are shared only
// under one route key (see Router).
func climb[K lookupKey, E keptAnswer[A], A any](ctx context.Context, c *Cache, l *ladder[K, E, A], req *oci.Request, key K) (A, rung, source, error) {
	var none A
	last, known := l.kept.get(key)
	if known && time.Since(last.confirmed()) < c.cfg.TagTTL {
		l.count(c, key, rungFresh)
		return last.answer(), rungFresh, source{}, nil
	}
	ask := l.ask(c, req)
	// Told before the route is planned: with an answer to serve stale, a
	// source of last resort (an alternate for a tag) is not asked.
	ask.Cached = known && last.staleOK() && c.staleWithin(last.confirmed())
	way := c.sourceFor(planAs(ask, req))
	ask.Route = way.key
	// The lookup may outlive this call: it takes copies, not l, which
	// would otherwise be allocated on every climb, fresh answers included.
	read, keep, kept := l.read, l.keep, l.kept
	v, err := c.shared(ctx, l.flight, key.String()+"\x00"+way.key, func(ctx context.Context) (any, error) {
		// Looked at again inside the flight: a lookup that ended between
		// this request's look at the table and its start of a flight has
		// kept an answer that needs no second question upstream.
		if e, ok := kept.get(key); ok && time.Since(e.confirmed()) < c.cfg.TagTTL {
			return e.answer(), nil
		}
		resp, err := c.fetchLookup(ctx, way, ask, known)
		if err != nil {
			return nil, err
		}
		a, err := read(c, ask, resp)
		if err != nil {
			return nil, err
		}
		keep(c, key, &a, resp)
		return a, nil
	})
	if err != nil && ctx.Err() != nil {
		return none, rungError, way, context.Cause(ctx)
	}
	if err == nil {
		l.count(c, key, rungShared)
		return v.(A), rungShared, way, nil
	}
	if oci.Refused(err) && req.Authorization != "" {
		// This request's alone, never shared, but asked the way the
		// lookup was decided: a second route would plan its sources again.
		client := *ask
		client.Authorization = req.Authorization
		resp, _, err := c.asClient(ctx, way.from, &client, nil, err)
		a := none
		if err == nil {
			a, err = l.read(c, &client, resp)
		}
		if err != nil {
			if l.countClientErrors {
				l.count(c, key, failed(err))
			}
			return none, rungError, way, err
		}
		l.count(c, key, rungAsClient)
		return a, rungAsClient, way, nil
	}
	if known && last.staleOK() && c.servesStale(last.confirmed(), err) {
		l.count(c, key, rungStale)
		c.log.Warn("serving stale "+l.what, append(key.logAttrs(),
			"age", time.Since(last.confirmed()).Round(time.Second), "err", err)...)
		return last.answer(), rungStale, way, nil
	}
	l.count(c, key, failed(err))
	return none, rungError, way, err
}

// planAs is the request a lookup's route is planned for: ask, or, for a
// request that carries a client's credentials, ask with them, so that the
// route is the one of a request with credentials (its tag may be private:
// never an alternate's to resolve). The lookup still asks as cacheyd, and
// is shared as ever: a request with credentials that joins a lookup an
// anonymous one began takes its answer, as it takes the answer kept.
func planAs(ask, req *oci.Request) *oci.Request {
	if req.Authorization == "" {
		return ask
	}
	plan := *ask
	plan.Authorization = req.Authorization
	return &plan
}

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

// fetchLookup asks way for req on behalf of a lookup. With a last answer
// to fall back on (known), one try: the stale answer is better served at
// once. Without one, what a retry can cure (5xx, 429) is retried as fills
// are, through the same route, rather than failing every node that asked
// at that moment. An origin that cannot be reached at all is answered at
// once, as a fill's is: the waiting clients try their next host.
func (c *Cache) fetchLookup(ctx context.Context, way source, req *oci.Request, known bool) (*oci.Response, error) {
	resp, err := way.from.Fetch(ctx, req)
	unreachable := errors.Is(err, oci.ErrUpstreamUnavailable) && !errors.Is(err, oci.ErrUpstreamTimeout)
	if err != nil && !known && !unreachable && oci.Retryable(err) {
		resp, err = c.withRetries(way).Fetch(ctx, req)
	}
	return resp, err
}

// servesStale reports whether a last answer upstream confirmed at checked
// may stand in for err: upstream could not answer (rather than answered
// no), and the answer is within TagStaleMax past its TTL.
func (c *Cache) servesStale(checked time.Time, err error) bool {
	return stalable(err) && c.staleWithin(checked)
}

// staleWithin reports whether an answer upstream confirmed at checked is
// within TagStaleMax past its TTL: one that may be served stale.
func (c *Cache) staleWithin(checked time.Time) bool {
	return c.cfg.TagStaleMax > 0 && time.Since(checked) < c.cfg.TagTTL+c.cfg.TagStaleMax
}

// stalable reports whether err is upstream being unable to answer, as
// opposed to upstream answering no.
func stalable(err error) bool {
	if errors.Is(err, oci.ErrUpstreamUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	e, ok := oci.AsError(err)
	return ok && e.Retryable()
}
