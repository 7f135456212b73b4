package sources

import (
	"context"
	"errors"
	"fmt"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// ObjectStore is a store of verified public content by digest behind this
// cacheyd's own tiers (tier/s3's *Store, a bucket shared by replicas and
// clusters): a source for content by digest asked as cacheyd, before the
// parent and the registry. Its Fetch fails wrapping tier.ErrNotFound for
// what it does not hold and tier.ErrFailed when the store fails; Refute is
// told that the bytes it sent for dg were not dg's, so that the good copy
// the next source brings replaces them.
type ObjectStore interface {
	Fetcher
	Refute(dg oci.Digest)
}

// storePlan plans the object store for content by digest asked as
// cacheyd: it holds every registry's content, which its digest names
// whatever the registry, and never what a client's credentials fetched.
type storePlan struct{ ask []Fetcher }

func newStorePlan(s ObjectStore) Planner {
	if s == nil {
		return nil
	}
	return storePlan{[]Fetcher{&alternate{f: storeFetcher{s}, label: "object store", told: s.Refute}}}
}

func (p storePlan) Plan(req *oci.Request, _ bool) (string, []Fetcher) {
	if req.Authorization != "" || req.Kind.IsListing() || !req.Reference.IsDigest() {
		return "", nil
	}
	return "", p.ask
}

// storeFetcher makes the store's failures its own, by reason: the route
// asks the next source for each.
type storeFetcher struct{ s ObjectStore }

func (f storeFetcher) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	resp, err := f.s.Fetch(ctx, req)
	if err == nil || ctx.Err() != nil {
		return resp, err
	}
	reason := Unreachable
	switch {
	case errors.Is(err, tier.ErrNotFound):
		reason = Missing
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, oci.ErrStalled):
		reason = Stalled
	}
	return nil, Fail(reason, fmt.Errorf("object store: %w", err))
}
