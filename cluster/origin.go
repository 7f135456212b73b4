package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Fetcher is what Origin falls back to, and what it is: an origin (the
// upstream client).
type Fetcher interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Origin is a replica's origin in a cluster (see the package doc). It is
// safe for concurrent use. Close stops it.
type Origin struct {
	upstream Fetcher
	self     string // "" without peers
	parent   string // base URL, "" without a parent
	scheme   string // of peers: "http://" or "https://"
	members  *members
	skips    *skips
	client   *client
	m        *metrics.Metrics
	log      *slog.Logger

	cancel context.CancelFunc // stops the members' refresh
	wg     sync.WaitGroup     // the refresh goroutine
}

// New returns the origin for cfg in front of upstream. With a dns: member
// list it resolves the name once before returning (a failure leaves this
// replica alone until a refresh succeeds) and then every cfg.Refresh until
// Close.
func New(cfg Config, upstream Fetcher) (*Origin, error) {
	return newOrigin(cfg, upstream, nil)
}

// newOrigin is New with the probe of members given: nil probes them over
// HTTP (client.probe).
func newOrigin(cfg Config, upstream Fetcher, probe func(ctx context.Context, addr string) error) (*Origin, error) {
	src, self, parent, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = defaultRefresh
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = defaultBackoff
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = defaultHeaderTimeout
	}
	if cfg.BodyIdle <= 0 {
		cfg.BodyIdle = defaultBodyIdle
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = defaultProbeTimeout
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	o := &Origin{
		upstream: upstream, self: self, parent: parent, scheme: "http://",
		client: client, m: cfg.Metrics, log: cfg.Logger,
	}
	if cfg.TLS != nil {
		o.scheme = "https://"
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	if self != "" {
		if probe == nil {
			probe = func(ctx context.Context, addr string) error { return o.client.probe(ctx, o.scheme+addr) }
		}
		o.members = newMembers(ctx, &o.wg, src, self, cfg, probe)
		if src.dnsName != "" {
			o.members.resolve(ctx)
		}
		o.wg.Add(1)
		// Stops when Close cancels ctx.
		go func() {
			defer o.wg.Done()
			o.members.run(ctx)
		}()
	}
	o.skips = newSkips(cfg.Backoff)
	return o, nil
}

// Close stops refreshing and probing the members and drops idle
// connections.
func (o *Origin) Close() {
	o.cancel()
	o.wg.Wait()
	o.client.close()
}

// Members returns the members requests may go to now, sorted: this
// replica and every member that proved the cluster secret and has not
// failed since; nil without peers.
func (o *Origin) Members() []string {
	if o.members == nil {
		return nil
	}
	return o.members.admitted()
}

// ranked is the members in req's order, owner first; nil when this
// replica fetches req itself whoever owns it (no peers, a peer's request,
// which is never forwarded again, or a listing: see listing).
func (o *Origin) ranked(req *oci.Request) []string {
	if o.members == nil || req.FromPeer || req.Kind.IsListing() {
		return nil
	}
	ms := o.members.current()
	if len(ms) < 2 {
		return nil
	}
	return Rank(ms, keyOf(req))
}

// Route names the member req goes to now, or "" when this replica fetches
// it itself (cache.Router).
func (o *Origin) Route(req *oci.Request) string {
	for _, m := range o.ranked(req) {
		switch {
		case m == o.self:
			return o.ownRoute(req)
		case !o.members.refused(m):
			return m
		}
	}
	return o.ownRoute(req)
}

// childRoute is the route of work this replica fetches itself for a
// request that came through another cacheyd (a child, whose parent this
// one is) while it has a parent of its own.
const childRoute = "parent, for a child"

// ownRoute is the route of work this replica fetches itself: "", or
// childRoute for a child's request when there is a parent to ask. Two
// cacheyds that are each other's parent would otherwise each share a
// child's request with a fill of their own clients' that waits for the
// other, and both wait for the answer timeout: kept apart, the child's
// request goes on to the parent with its chain, comes back to where it
// started, is refused as a loop, and is fetched upstream.
func (o *Origin) ownRoute(req *oci.Request) string {
	if o.parent != "" && len(req.Via) > 0 && !req.Kind.IsListing() {
		return childRoute
	}
	return ""
}

// Fetch asks the first member by rank that is not skipped, and the next
// when it fails; reaching this replica, it fetches itself. Work that was
// routed to a peer when it started (req.Route, set by the cache) is the
// exception: reaching itself, this replica asks itself as a peer, so that
// the work ends up in its own fill for the key, the one every replica
// falling back to it joins, rather than in a second fetch upstream. (Work
// keyed as this replica's own must not: it would wait for itself.) When
// asking itself fails too, upstream.
func (o *Origin) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	ranked := o.ranked(req)
	if ranked == nil {
		reason := "owner"
		if req.FromPeer {
			reason = "peer"
		}
		return o.direct(ctx, req, reason)
	}
	reason := "owner"
	for _, m := range ranked {
		if m == o.self && (req.Route == "" || req.Route == childRoute) {
			return o.direct(ctx, req, reason)
		}
		if m != o.self && !o.members.usable(ctx, m) {
			// It failed a moment ago, or has not proved the cluster
			// secret (its first probe is waited for).
			reason = "fallback"
			continue
		}
		resp, err := o.ask(ctx, m, req)
		if err == nil || !errors.Is(err, errPeer) {
			return resp, err
		}
		reason = "fallback"
		o.log.Debug("cluster: peer failed; asking the next", "member", m, "key", keyOf(req), "err", err)
		if m == o.self {
			break // asking itself failed: only upstream is left
		}
	}
	return o.direct(ctx, req, "fallback")
}

// ask asks member m (a peer, or this replica itself) for req with the hop
// header.
func (o *Origin) ask(ctx context.Context, m string, req *oci.Request) (*oci.Response, error) {
	return o.askBase(ctx, m, o.scheme+m, req, true, "peer")
}

// direct fetches req as this replica's own: from the parent, if there is
// one and it does not fail, else from upstream.
func (o *Origin) direct(ctx context.Context, req *oci.Request, reason string) (*oci.Response, error) {
	if req.Kind.IsListing() {
		// Listings (tags, referrers) are small, change as a tag does and
		// are GETs no registry counts as a pull: each replica asks
		// upstream itself and keeps the answer for the tag TTL. Sharing
		// them would save little and cost a hop on every lookup.
		return o.upstream.Fetch(ctx, req)
	}
	// A request that came through as many cacheyds as a chain may hold,
	// this one included, goes no further: its parent would refuse it for
	// its length, and that refusal would say nothing of the parent.
	further := len(req.Via)+1 < oci.MaxVia
	if o.parent != "" && further && !o.skips.skipped(o.parent) {
		// No hop header: to the parent, this replica is a client like
		// any, whose request its own cluster may forward to an owner.
		resp, err := o.askBase(ctx, o.parent, o.parent, req, false, "parent")
		if err == nil || !errors.Is(err, errPeer) {
			return resp, err
		}
		o.log.Debug("cluster: parent failed; asking upstream", "parent", o.parent, "err", err)
		reason = "parent-failed"
	}
	if o.members != nil || o.parent != "" {
		o.m.ClusterDirect.WithLabelValues(reason).Inc()
	}
	return o.upstream.Fetch(ctx, req)
}

// askBase asks the cacheyd at base (skip-tracked as addr) for req and
// counts the outcome under to ("peer" or "parent").
func (o *Origin) askBase(ctx context.Context, addr, base string, req *oci.Request, hop bool, to string) (*oci.Response, error) {
	a, err := o.client.fetch(ctx, base, req, hop, o.m.ClusterBytes.WithLabelValues(to))
	outcomes := o.m.ClusterRequests
	switch {
	case errors.Is(err, errCycle):
		o.fail(addr, to)
		o.log.Error("cluster: "+to+" cycle: the request came back to the "+to+" through the cacheyds it asks; skipping it",
			to, addr, "backoff", o.skips.backoff, "err", err)
		outcomes.WithLabelValues(to, "loop").Inc()
		return nil, err
	case errors.Is(err, errUnproven):
		o.fail(addr, to)
		o.log.Warn("cluster: skipping a "+to+" whose answer is not proven with the cluster secret", to, addr, "backoff", o.skips.backoff, "err", err)
		outcomes.WithLabelValues(to, "unauthenticated").Inc()
		return nil, err
	case errors.Is(err, errWrong):
		o.fail(addr, to)
		o.log.Warn("cluster: skipping a "+to+" that gave a wrong answer", to, addr, "backoff", o.skips.backoff, "err", err)
		outcomes.WithLabelValues(to, "wrong").Inc()
		return nil, err
	case errors.Is(err, errDown):
		o.fail(addr, to)
		o.log.Warn("cluster: skipping an unreachable "+to, to, addr, "backoff", o.skips.backoff, "err", err)
		outcomes.WithLabelValues(to, "fallback").Inc()
		return nil, err
	case errors.Is(err, errPeer):
		outcomes.WithLabelValues(to, "fallback").Inc()
		return nil, err
	case errors.Is(err, oci.ErrRelayed):
		outcomes.WithLabelValues(to, "relayed").Inc()
		return nil, err
	case err != nil:
		if _, ok := oci.AsError(err); ok {
			outcomes.WithLabelValues(to, "refused").Inc()
		}
		return nil, err
	}
	outcomes.WithLabelValues(to, outcomeOf(a.source)).Inc()
	if a.resp.Body != nil {
		a.resp.Body = &watchedBody{ReadCloser: a.resp.Body, ctx: ctx, failed: func(how string, err error) {
			outcomes.WithLabelValues(to, how).Inc()
			if how == "broken" {
				// A cut alone is not held against it: the cache's retry
				// wrapper asks again, and finds it unreachable (skipped
				// then), or learns what its upstream did (relayed).
				o.log.Debug("cluster: a "+to+"'s body broke", to, addr, "err", err)
				return
			}
			// It stalled, or sent bytes that are not the object: the
			// resume must find the next source.
			o.fail(addr, to)
			o.log.Warn("cluster: skipping a "+to+" whose body "+how, to, addr, "backoff", o.skips.backoff, "err", err)
		}}
	}
	return a.resp, nil
}

// fail skips addr, a member (to "peer") until a probe after the backoff
// finds it proving the secret again, the parent for the backoff.
func (o *Origin) fail(addr, to string) {
	if to == "peer" {
		o.members.fail(addr)
		return
	}
	o.skips.fail(addr)
}

// outcomeOf maps a peer's answer source to the outcome counted.
func outcomeOf(source string) string {
	switch source {
	case "memory", "disk", "tags":
		return "hit"
	case "joined":
		return "joined"
	}
	return "fetched"
}

// watchedBody tells failed once how the body failed, unless its reader's
// own context ended it: "stalled" when the reader abandoned it for sending
// nothing (the context's cause is oci.ErrStalled), "wrong" when its bytes
// are not the object's, "broken" for anything else (a cut).
type watchedBody struct {
	io.ReadCloser
	ctx    context.Context
	failed func(how string, err error)
	done   bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || errors.Is(err, io.EOF) || b.done {
		return n, err
	}
	how := "broken"
	switch {
	case errors.Is(err, oci.ErrDigestMismatch):
		how = "wrong"
	case errors.Is(context.Cause(b.ctx), oci.ErrStalled):
		how = "stalled"
	case b.ctx.Err() != nil:
		return n, err // the reader's own end
	}
	b.done = true
	b.failed(how, err)
	return n, fmt.Errorf("cluster: %w", err)
}
