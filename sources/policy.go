package sources

import (
	"context"
	"log/slog"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Set is every source one cacheyd has, each in its place; the composition
// root (internal/app) fills it in. A source it does not have is nil.
type Set struct {
	// Owner plans the cluster's members ranked for a request's key (package
	// cluster); nil for a cacheyd without peers.
	Owner Planner
	// Parent is the parent cacheyd (package cluster); nil without one.
	Parent Planner
	// Registry is the registry a request names: the upstream client.
	// Required.
	Registry Fetcher
	// Store is an object store behind this cacheyd's tiers, asked for
	// content by digest as cacheyd before the parent and the registry:
	// the bucket its replicas, and other clusters, keep what they fetched
	// in. Nil has none.
	Store ObjectStore
	// Alternates serve content by digest of the registry each stands in
	// for, in order, as cacheyd's own content only. Nil has none.
	Alternates []AlternateRegistry
	// AlternateMode is where the alternates stand beside the registry.
	// The zero value means Prefer.
	AlternateMode AlternateMode
	// Remaining tells the registry's pull budget, for Reserve. Nil tells
	// none: the reserve never applies.
	Remaining Remaining
	// Reserve is, in Fallback mode, the pulls of a registry's budget kept
	// for what no alternate holds: while fewer remain, a manifest GET by
	// digest goes to the alternates first. Zero keeps none.
	Reserve int64
	// AlternateTags lets the alternates resolve a tag of their registry
	// while it fails and the cache holds no answer to serve
	// (alternatetags.go). False resolves every tag at its registry only.
	AlternateTags bool
	// Metrics counts failures by source and reason, and fetches from the
	// registry of a clustered cacheyd by why. Nil counts nowhere.
	Metrics *metrics.Metrics
	// Logger receives each failure at Debug. Nil means slog.Default().
	Logger *slog.Logger
}

// class is a kind of request as the policy tells them apart.
type class uint8

const (
	byDigest        class = iota // content by digest, as cacheyd
	byTag                        // a manifest by tag, as cacheyd
	withCredentials              // anything with a client's credentials
	fromPeer                     // another replica's request
	listing                      // a tag list or referrers
	classes
)

// classOf is req's class.
func classOf(req *oci.Request) class {
	switch {
	case req.Kind.IsListing():
		return listing
	case req.FromPeer:
		return fromPeer
	case req.Authorization != "":
		return withCredentials
	case !req.Reference.IsDigest():
		return byTag
	}
	return byDigest
}

// entry is one place of a list.
type entry struct {
	name Name
	plan Planner
}

// policy is where a request's bytes may come from, in order, by its class:
// the one place that says it. A source the set does not have is left out.
// A new source (own tiers, an object store, alternate registries) is a
// field of Set and its place in these lists.
func policy(s Set) [classes][]entry {
	owner, parent, registry := entry{Owner, s.Owner}, entry{Parent, s.Parent}, entry{Registry, Just{s.Registry}}
	store := entry{Store, newStorePlan(s.Store)}
	// With alternates for tags, the registry's place passes a tag's
	// failure on to them, after it (alternatetags.go).
	tagAlts := entry{Alternate, nil}
	if s.AlternateTags && len(s.Alternates) > 0 {
		as := newTagAlternates(s.Alternates, s.Metrics, s.Logger)
		tagAlts, registry = entry{Alternate, as}, entry{Registry, newTagRegistry(s.Registry, as)}
	}
	// first and last are where the registry stands for content by digest
	// as cacheyd: after the alternates (prefer), or before and after
	// them (fallback), see fallback.go.
	first, alts, last := entry{Registry, nil}, alternatesAt(s), registry
	if s.AlternateMode == Fallback && len(s.Alternates) > 0 {
		as := newAlternates(s.Alternates)
		fb := fallbackPlan{registry: s.Registry, alts: as, left: s.Remaining, reserve: s.Reserve, m: s.Metrics, plain: registry.plan}
		lfb := fb
		lfb.last = true
		first, alts, last = entry{Registry, &fb}, entry{Alternate, as}, entry{Registry, &lfb}
	}
	return [classes][]entry{
		// The object store after the key's owner, which fills from it
		// for the cluster (a replica that is not the owner asks it only
		// when the owner fails), and before the parent, whose cache is
		// further away. The alternates after the cluster, which holds
		// what any replica fetched, and before the registry, whose pulls
		// they spare; or, in fallback mode, after the registry's first
		// answer.
		byDigest: present(owner, store, parent, first, alts, last),
		byTag:    present(owner, parent, registry, tagAlts),
		// As cacheyd's own: the owner gets the credentials sealed and
		// checks them as this replica would; to the parent, this
		// cacheyd is a client like any. (The cache decides one route for
		// a client's request, whose fill asks as cacheyd first and with
		// the credentials on a refusal: a list of its own here would
		// need a route of its own for that second fill.)
		withCredentials: present(owner, parent, registry),
		// Never forwarded to a member again: a request makes one hop. A
		// peer's request for a digest is this replica's own fetch for the
		// cluster (it owns the key), so the alternates serve it as they
		// serve this replica's; the planner keeps them from its tags and
		// from a client's credentials it carries sealed.
		fromPeer: present(store, parent, first, alts, last, tagAlts),
		// Listings are small, change as a tag does and are GETs no
		// registry counts as a pull: each replica asks the registry
		// itself and keeps the answer for the tag TTL. Sharing them
		// would save little and cost a hop on every lookup.
		listing: present(registry),
	}
}

// alternatesAt is the alternates' entry before the registry: Prefer's
// (fallback mode places its own after the registry's first place).
func alternatesAt(s Set) entry {
	switch s.AlternateMode {
	case "", Prefer:
	default:
		return entry{Alternate, nil}
	}
	if len(s.Alternates) == 0 {
		return entry{Alternate, nil}
	}
	return entry{Alternate, newAlternates(s.Alternates)}
}

// present is the entries whose source the set has.
func present(es ...entry) []entry {
	out := es[:0]
	for _, e := range es {
		if e.plan != nil {
			out = append(out, e)
		}
	}
	return out
}

// Policy is a set of sources and the policy over them. It is safe for
// concurrent use.
type Policy struct {
	lists [classes][]entry
	m     *metrics.Metrics
	log   *slog.Logger
	// clustered: the set has an owner or a parent, so that a fetch from
	// the registry is counted with why (metrics.ClusterDirect).
	clustered bool
	// alone is the one route of a cacheyd with nothing but the registry:
	// it plans nothing and learns nothing, so every request shares it.
	alone *Route
}

// New returns the policy over s.
func New(s Set) *Policy {
	if s.Metrics == nil {
		s.Metrics = metrics.New(nil)
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	p := &Policy{lists: policy(s), m: s.Metrics, log: s.Logger, clustered: s.Owner != nil || s.Parent != nil}
	if !p.clustered && len(s.Alternates) == 0 && s.Store == nil {
		p.alone = &Route{p: p, steps: []step{{Registry, s.Registry}}}
	}
	return p
}

// Route decides where the work for req (a fill, a shared lookup) fetches
// from, once, as the cache keys it: the route's key, and the sources to
// ask in order, each planned now.
func (p *Policy) Route(req *oci.Request) *Route { return p.route(req, false) }

// Fetch fetches req on its own, outside a route: a request of work keyed
// earlier by req.Route, or of none (a check of a client's
// credentials). Its sources are planned for this one request.
func (p *Policy) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	return p.route(req, true).Fetch(ctx, req)
}

// route plans req's list; keyed keeps to req.Route as its key.
func (p *Policy) route(req *oci.Request, keyed bool) *Route {
	if p.alone != nil {
		return p.alone
	}
	r := &Route{p: p}
	r.steps = r.buf[:0]
	if keyed {
		r.key = req.Route
	}
	for _, e := range p.lists[classOf(req)] {
		key, ask := e.plan.Plan(req, keyed)
		if !keyed && r.key == "" {
			r.key = key
		}
		for _, f := range ask {
			r.steps = append(r.steps, step{e.name, f})
		}
	}
	return r
}
