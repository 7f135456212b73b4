package sources

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Remaining is what the composition root tells of a registry's pull
// budget (the upstream client's, as the registry last stated it): the
// pulls left in its window, and whether the registry stated any.
type Remaining func(registry string) (left int64, stated bool)

// Fallback mode, in a request's list: the registry first, then the
// alternates, then the registry once more. The registry's first place
// asks it unless a manifest GET would spend its budget below the reserve
// (a blob need not spare it: Docker Hub counts manifest GETs only, so a
// blob goes to the registry unless it fails); its answers of 429 (its
// own, or the upstream client's held one), 5xx and its being unreachable
// become its *Failure, so that the alternates are asked. Its last place
// asks it only when the first passed it over for the reserve: content no
// alternate holds still comes from the registry. When no alternate has
// the content either, the route answers with the registry's own answer
// (the 429 with its Retry-After), not an alternate's 404. A request of a
// registry without alternates plans the plain registry: its answers are
// the answer, as in any mode.

// fallbackPlan plans the registry's two places in fallback mode.
type fallbackPlan struct {
	registry Fetcher
	alts     alternates
	left     Remaining
	reserve  int64
	m        *metrics.Metrics
	last     bool // the place after the alternates
	// plain plans the registry for a request without alternates by
	// digest (a tag, with its own alternates after it: tagRegistry); nil
	// plans it as it is.
	plain Planner
}

// Plan returns the registry's place for req: wrapped when req's registry
// has alternates to fall back to, plain (and only in the first place)
// otherwise.
func (p *fallbackPlan) Plan(req *oci.Request, keyed bool) (string, []Fetcher) {
	if _, alts := p.alts.Plan(req, keyed); len(alts) == 0 {
		switch {
		case p.last:
			return "", nil
		case p.plain != nil:
			return p.plain.Plan(req, keyed)
		}
		return "", []Fetcher{p.registry}
	}
	if p.last {
		return "", []Fetcher{&registryLast{p}}
	}
	return "", []Fetcher{&registryFirst{p}}
}

// spares reports whether req must spare the registry's budget: a manifest
// GET while the budget the registry stated is below the reserve.
func (p *fallbackPlan) spares(req *oci.Request) bool {
	if p.reserve <= 0 || p.left == nil || req.Kind != oci.KindManifest || req.Method != http.MethodGet {
		return false
	}
	left, stated := p.left(req.Registry)
	return stated && left < p.reserve
}

// errReserve is why the registry was passed over for a manifest GET.
var errReserve = errors.New("registry: its remaining pull budget is below the reserve")

// registryFirst is the registry before the alternates.
type registryFirst struct{ p *fallbackPlan }

func (r *registryFirst) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if r.p.spares(req) {
		// Passed over, as a source passes on; counted, so that the
		// pulls the reserve spares are seen.
		r.p.m.SourceFailures.WithLabelValues(string(Registry), string(Reserve)).Inc()
		return nil, fmt.Errorf("%w: %w", ErrNotAsked, errReserve)
	}
	resp, err := r.p.registry.Fetch(ctx, req)
	if err == nil || ctx.Err() != nil {
		return resp, err
	}
	if reason, ok := fallsBack(err); ok {
		return nil, &Failure{Reason: reason, Err: err, answer: true}
	}
	return nil, err
}

// fallsBack is why a registry's answer sends a request to the alternates
// in fallback mode: a 429, a failure of its own (5xx), or none at all.
func fallsBack(err error) (Reason, bool) {
	if e, ok := oci.AsError(err); ok && e.Upstream && !errors.Is(err, oci.ErrRelayed) {
		switch {
		case e.Status == http.StatusTooManyRequests:
			return Limited, true
		case e.Status >= 500:
			return Failing, true
		}
		return "", false
	}
	if errors.Is(err, oci.ErrUpstreamUnavailable) {
		return Unreachable, true
	}
	return "", false
}

// registryLast is the registry after the alternates: asked only when the
// first place passed it over for the reserve.
type registryLast struct{ p *fallbackPlan }

func (r *registryLast) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if !r.p.spares(req) {
		return nil, ErrNotAsked
	}
	return r.p.registry.Fetch(ctx, req)
}
