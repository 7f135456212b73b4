package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// Origin is a replica's place in a cluster (see the package doc): the
// members, and the sources it gives the policy (package sources): the
// owner (Owner) and the parent (Parent). It is safe for concurrent use.
// Close stops it.
type Origin struct {
	self    string // "" without peers
	parent  string // base URL, "" without a parent
	scheme  string // of peers: "http://" or "https://"
	members *members
	skips   *skips
	client  *client
	m       *metrics.Metrics
	log     *slog.Logger
	heard   func(registry, member string, b peerauth.Budget) // Config.Heard

	cancel context.CancelFunc // stops the members' refresh
	wg     sync.WaitGroup     // the refresh goroutine
}

// New returns the origin for cfg. With a dns: member list it resolves the
// name once before returning (a failure leaves this replica alone until a
// refresh succeeds) and then every cfg.Refresh until Close.
func New(cfg Config) (*Origin, error) {
	return newOrigin(cfg, nil)
}

// newOrigin is New with the probe of members given: nil probes them over
// HTTP (client.probe).
func newOrigin(cfg Config, probe func(ctx context.Context, addr string) error) (*Origin, error) {
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
		self: self, parent: parent, scheme: "http://",
		client: client, m: cfg.Metrics, log: cfg.Logger, heard: cfg.Heard,
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

// askBase asks the cacheyd at base (skip-tracked as addr) for req and
// counts the outcome under to ("peer" or "parent").
func (o *Origin) askBase(ctx context.Context, addr, base string, req *oci.Request, hop bool, to string) (*oci.Response, error) {
	a, err := o.client.fetch(ctx, base, req, hop, o.m.ClusterBytes.WithLabelValues(to))
	o.hear(req, addr, a)
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

// hear passes on the pull budget the member at addr stated on its answer
// to req, if it stated one that is believed (Config.Heard).
func (o *Origin) hear(req *oci.Request, addr string, a answer) {
	if a.budgetErr != nil {
		o.log.Debug("cluster: ignoring a member's pull budget", "peer", addr, "registry", req.Registry, "err", a.budgetErr)
	}
	// This replica's own answer (it asks itself when the work was keyed
	// to it) states what it read itself, which it has.
	if a.budget == nil || o.heard == nil || addr == o.self {
		return
	}
	b := *a.budget
	if now := time.Now(); b.Seen.After(now) {
		b.Seen = now // its clock is ahead: it saw it now at the latest
	}
	o.heard(req.Registry, addr, b)
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
	err = fmt.Errorf("cluster: %w", err)
	// A stall or bytes that are not the object are the source's own
	// failure: the route moves past it, and the resume asks the next. A
	// cut is not (see askBase).
	switch how {
	case "wrong":
		err = sources.Fail(sources.Wrong, err)
	case "stalled":
		err = sources.Fail(sources.Stalled, err)
	}
	return n, err
}
