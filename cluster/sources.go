package cluster

import (
	"context"
	"errors"
	"slices"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// The two sources a cluster gives the policy (package sources): the owner,
// which is the members ranked for a request's key down to this replica,
// and the parent. Which requests go to them, and what comes after, is the
// policy's; how each is asked, and whose failure is what, is theirs.

// Owner returns the owner source: the members ranked for a request's key,
// planned once per route; nil without peers.
func (o *Origin) Owner() sources.Planner {
	if o.members == nil {
		return nil
	}
	return owner{o}
}

// Parent returns the parent source; nil without a parent.
func (o *Origin) Parent() sources.Planner {
	if o.parent == "" {
		return nil
	}
	p := &parent{o: o}
	p.one = []sources.Fetcher{p}
	return p
}

// childRoute is the route key of work this replica fetches itself for a
// request that came through another cacheyd (a child, whose parent this
// one is) while it has a parent of its own. Two cacheyds that are each
// other's parent would otherwise each share a child's request with a fill
// of their own clients' that waits for the other, and both wait for the
// answer timeout: kept apart, the child's request goes on to the parent
// with its chain, comes back to where it started, is refused as a loop,
// and is fetched upstream.
const childRoute = "parent, for a child"

// owner plans the members for a request.
type owner struct{ o *Origin }

// Plan ranks the members for req's key once: the members ranked above this
// replica are asked in order, and the route's key is the first of them not
// known to be refused (its first probe may still be under way), or ""
// when this replica comes first: it fetches itself, from the sources after
// the owner. Work keyed to a member (the key decided now, or req.Route
// when keyed) asks this replica itself as a peer after the members above
// it, so that the work ends up in its own fill for the key, the one every
// replica falling back to it joins, rather than in a second fetch
// upstream. Work keyed as this replica's own must not: it would wait for
// itself.
func (w owner) Plan(req *oci.Request, keyed bool) (string, []sources.Fetcher) {
	o := w.o
	ms := o.members.current()
	if len(ms) < 2 {
		return "", nil
	}
	ranked := Rank(ms, keyOf(req))
	above := ranked[:slices.Index(ranked, o.self)]
	key := ""
	if keyed {
		key = req.Route
	} else {
		for _, m := range above {
			if !o.members.refused(m) {
				key = m
				break
			}
		}
	}
	toPeer := key != "" && key != childRoute
	n := len(above)
	if toPeer {
		n++
	}
	if n == 0 {
		return key, nil
	}
	steps := make([]member, n)
	ask := make([]sources.Fetcher, n)
	for i := range steps {
		steps[i] = member{o: o, addr: o.self}
		if i < len(above) {
			steps[i].addr = above[i]
		}
		ask[i] = &steps[i]
	}
	return key, ask
}

// member is one member of a route's owner part: a peer, or this replica
// itself asked as a peer.
type member struct {
	o    *Origin
	addr string
}

// Fetch asks the member with the hop header, unless it failed a moment ago
// or has not proved the cluster secret (its first probe is waited for).
func (m *member) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if m.addr != m.o.self && !m.o.members.usable(ctx, m.addr) {
		return nil, sources.ErrNotAsked
	}
	resp, err := m.o.askBase(ctx, m.addr, m.o.scheme+m.addr, req, true, "peer")
	return resp, failure(err)
}

// parent is the parent source.
type parent struct {
	o   *Origin
	one []sources.Fetcher // itself, what it plans
}

// Plan names childRoute for a request that came through another cacheyd.
func (p *parent) Plan(req *oci.Request, _ bool) (string, []sources.Fetcher) {
	if len(req.Via) > 0 {
		return childRoute, p.one
	}
	return "", p.one
}

// Fetch asks the parent without the hop header: to the parent, this
// replica is a client like any, whose request its own cluster may forward
// to an owner. A parent that failed a moment ago is not asked, nor is one
// a request's chain cannot reach: a request that came through as many
// cacheyds as a chain may hold, this one included, goes no further (the
// parent would refuse it for its length, which would say nothing of the
// parent).
func (p *parent) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	o := p.o
	if len(req.Via)+1 >= oci.MaxVia || o.skips.skipped(o.parent) {
		return nil, sources.ErrNotAsked
	}
	resp, err := o.askBase(ctx, o.parent, o.parent, req, false, "parent")
	return resp, failure(err)
}

// failure marks a failure of the cacheyd asked itself (errPeer) as its
// source's, with the reason; anything else is the answer.
func failure(err error) error {
	reason := sources.Failing
	switch {
	case err == nil || !errors.Is(err, errPeer):
		return err
	case errors.Is(err, errCycle):
		reason = sources.Loop
	case errors.Is(err, errUnproven):
		reason = sources.Unauthenticated
	case errors.Is(err, errWrong):
		reason = sources.Wrong
	case errors.Is(err, errDown):
		reason = sources.Unreachable
	}
	return sources.Fail(reason, err)
}
