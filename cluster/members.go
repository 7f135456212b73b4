package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
)

// MaxMembers bounds the members of one cluster, this replica included: a
// static list longer than it is refused, and a dns: answer longer than it
// is cut to this replica and the lowest addresses after sorting (the same
// cut on every replica that sees the same answer), with an error logged
// once per answer. 128 replicas of one cache is far more than any cluster
// needs, and it bounds the probes, the goroutines that run them and the
// member gauge's series.
const MaxMembers = 128

// members is the current view of the cluster (every member's address,
// sorted, this replica's always among them), and what this replica knows
// of each other member: whether it proved the cluster secret. A member is
// asked for keys only once it has (admitted): it is probed when it first
// appears in the view, and again a backoff after each failure, until it
// proves it again. A member that never answers, or cannot prove the secret,
// never owns a key.
type members struct {
	self     string
	src      source
	resolver Resolver
	refresh  time.Duration
	m        *metrics.Metrics
	log      *slog.Logger

	// probe asks a member to prove the secret; each probe is bounded by
	// probeTimeout, and a member that failed is probed again after
	// backoff.
	probe        func(ctx context.Context, addr string) error
	probeTimeout time.Duration
	backoff      time.Duration

	ctx context.Context // ends every probe loop (Origin.Close)
	wg  *sync.WaitGroup // the probe loops

	view atomic.Pointer[[]string] // replaced whole, read without a lock

	// mu guards health, failed and capped, and the member gauges' series
	// against a view changing while a member's state is shown: a member
	// that left must not get its series back.
	mu     sync.Mutex
	health map[string]*health // every member of the view but self
	failed bool               // the last resolution failed (logged once per failure run)
	capped string             // the last over-cap answer logged, its addresses joined
}

// health is what this replica knows of one other member.
type health struct {
	// decided is closed once the first probe has ended: a request that
	// would ask the member waits for it (bounded by the probe timeout)
	// rather than skip a member that is about to prove itself.
	decided chan struct{}
	// ok: the member proved the secret and has not failed since.
	ok atomic.Bool
	// failed tells the probe loop that a request found the member failing:
	// it is probed again after the backoff. Buffered, one signal is enough.
	failed chan struct{}
	// stop ends the probe loop, when the member leaves the view.
	stop context.CancelFunc
	// proved is the last probe's verdict, for logging changes only; only
	// the probe loop touches it.
	proved bool
}

func newMembers(ctx context.Context, wg *sync.WaitGroup, src source, self string, cfg Config, probe func(context.Context, string) error) *members {
	ms := &members{self: self, src: src, resolver: cfg.Resolver, refresh: cfg.Refresh, m: cfg.Metrics, log: cfg.Logger,
		probe: probe, probeTimeout: cfg.ProbeTimeout, backoff: cfg.Backoff, ctx: ctx, wg: wg, health: map[string]*health{}}
	initial := []string{self}
	if src.static != nil {
		initial = src.static
	}
	ms.set(initial)
	return ms
}

// current returns the view; callers must not change it.
func (ms *members) current() []string { return *ms.view.Load() }

// admitted returns the members requests may go to now, sorted: this
// replica and every member that proved the secret and has not failed since.
func (ms *members) admitted() []string {
	var out []string
	for _, a := range ms.current() {
		if a == ms.self || ms.ready(a) {
			out = append(out, a)
		}
	}
	return out
}

// ready reports whether addr may be asked now without waiting: it proved
// the secret and has not failed since.
func (ms *members) ready(addr string) bool {
	h := ms.get(addr)
	return h != nil && h.ok.Load()
}

// refused reports whether addr is known not to be asked: it failed, or its
// first probe ended without proof. A member whose first probe is still
// under way is not refused: a request would wait for it (usable).
func (ms *members) refused(addr string) bool {
	h := ms.get(addr)
	if h == nil {
		return true
	}
	select {
	case <-h.decided:
		return !h.ok.Load()
	default:
		return false
	}
}

// usable reports whether addr may be asked, waiting for its first probe if
// it is still under way, until ctx ends.
func (ms *members) usable(ctx context.Context, addr string) bool {
	h := ms.get(addr)
	if h == nil {
		return false
	}
	select {
	case <-h.decided:
	case <-ctx.Done():
		return false
	}
	return h.ok.Load()
}

func (ms *members) get(addr string) *health {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.health[addr]
}

// fail marks addr failing: requests skip it until a probe, a backoff from
// now, finds it proving the secret again.
func (ms *members) fail(addr string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	h := ms.health[addr]
	if h == nil {
		return // this replica, or a member that left
	}
	h.ok.Store(false)
	ms.m.ClusterSkipped.WithLabelValues(addr).Set(1)
	select {
	case h.failed <- struct{}{}:
	default:
	}
}

// set installs a view: sorted, deduplicated, with self. A member new to the
// view starts being probed; one that left stops, and loses its series.
func (ms *members) set(addrs []string) {
	v := slices.Clone(addrs)
	if ms.self != "" && !slices.Contains(v, ms.self) {
		v = append(v, ms.self)
	}
	slices.Sort(v)
	v = slices.Compact(v)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var old []string
	if p := ms.view.Swap(&v); p != nil {
		old = *p
	}
	if slices.Equal(old, v) {
		return
	}
	for _, a := range old {
		if !slices.Contains(v, a) {
			if h := ms.health[a]; h != nil {
				h.stop()
				delete(ms.health, a)
			}
			ms.m.ClusterSkipped.DeleteLabelValues(a)
		}
	}
	for _, a := range v {
		if slices.Contains(old, a) {
			continue
		}
		if a == ms.self {
			ms.m.ClusterSkipped.WithLabelValues(a).Set(0)
			continue
		}
		// Not asked until it proves the secret.
		ms.m.ClusterSkipped.WithLabelValues(a).Set(1)
		ctx, stop := context.WithCancel(ms.ctx)
		h := &health{decided: make(chan struct{}), failed: make(chan struct{}, 1), stop: stop}
		ms.health[a] = h
		ms.wg.Add(1)
		// Stops when the member leaves the view (h.stop) or the origin
		// closes (ms.ctx).
		go ms.watch(ctx, a, h)
	}
	ms.m.ClusterMembers.Set(float64(len(v)))
	if old != nil {
		ms.log.Info("cluster members changed", "members", v, "was", old)
	}
}

// watch probes addr until ctx ends: at once, then a backoff after each
// failed probe, and a backoff after a request found it failing.
func (ms *members) watch(ctx context.Context, addr string, h *health) {
	defer ms.wg.Done()
	first := true
	defer func() {
		if first {
			close(h.decided) // nobody waits for a member that left
		}
	}()
	for {
		var err error
		if first {
			err = ms.firstProbe(ctx, addr)
		} else {
			pctx, cancel := context.WithTimeout(ctx, ms.probeTimeout)
			err = ms.probe(pctx, addr)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		ms.verdict(addr, h, err, first)
		if first {
			first = false
			close(h.decided)
		}
		if err == nil {
			select {
			case <-ctx.Done():
				return
			case <-h.failed:
			}
		}
		t := time.NewTimer(ms.backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case <-h.failed: // a failure before this probe: it decides anew
		default:
		}
	}
}

// firstRetry spaces the first probes of a member that cannot be reached
// yet.
const firstRetry = 100 * time.Millisecond

// firstProbe probes a member new to the view. It gets the probe timeout in
// all to answer: a member that cannot be reached yet (replicas of a static
// list start one after another) is probed again every firstRetry within
// it, while a member that answers without proof, or never answers, is
// decided on at once or at the end.
func (ms *members) firstProbe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, ms.probeTimeout)
	defer cancel()
	for {
		err := ms.probe(ctx, addr)
		if err == nil || !errors.Is(err, errNoAnswer) {
			return err
		}
		t := time.NewTimer(firstRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// verdict records a probe of addr: admitted or not, shown on its gauge,
// logged when it changes.
func (ms *members) verdict(addr string, h *health, err error, first bool) {
	ms.mu.Lock()
	if ms.health[addr] == h { // still a member
		h.ok.Store(err == nil)
		ms.m.ClusterSkipped.WithLabelValues(addr).Set(map[bool]float64{true: 0, false: 1}[err == nil])
	}
	ms.mu.Unlock()
	switch {
	case err == nil && (first || !h.proved):
		ms.log.Info("cluster member admitted: it proved the cluster secret", "member", addr)
	case err != nil && (first || h.proved):
		ms.log.Warn("cluster member not admitted: it did not prove the cluster secret; it owns no keys until it does",
			"member", addr, "retry", ms.backoff, "err", err)
	}
	h.proved = err == nil
}

// resolve looks the DNS name up once and installs the answer. A failed
// lookup keeps the last view: a DNS hiccup must not make every replica
// think it is alone.
func (ms *members) resolve(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, ms.refresh)
	defer cancel()
	hosts, err := ms.resolver.LookupHost(ctx, ms.src.dnsName)
	ms.mu.Lock()
	wasFailed := ms.failed
	ms.failed = err != nil
	ms.mu.Unlock()
	if err != nil {
		if !wasFailed && ctx.Err() == nil {
			ms.log.Warn("cluster members: lookup failed; keeping the last members", "name", ms.src.dnsName, "err", err)
		}
		return
	}
	addrs := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if a, err := canonAddr(net.JoinHostPort(h, ms.src.port)); err == nil && a != ms.self {
			addrs = append(addrs, a)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	ms.set(ms.bound(addrs))
}

// bound cuts a sorted answer of others (this replica not among them) to
// MaxMembers with this replica, logging an error once per answer over it.
func (ms *members) bound(others []string) []string {
	over := len(others)+1 > MaxMembers
	key := ""
	if over {
		key = strings.Join(others, ",")
	}
	ms.mu.Lock()
	changed := key != ms.capped
	ms.capped = key
	ms.mu.Unlock()
	if !over {
		return others
	}
	if changed {
		ms.log.Error("cluster members: the DNS answer holds more members than a cluster may have; using this replica and the lowest addresses",
			"name", ms.src.dnsName, "answered", len(others)+1, "max", MaxMembers, "self", ms.self)
	}
	return others[:MaxMembers-1]
}

// run resolves a dns: member list every refresh until ctx ends; a static
// list has nothing to do. The first resolution happens before run is
// called (see New).
func (ms *members) run(ctx context.Context) {
	if ms.src.dnsName == "" {
		return
	}
	t := time.NewTicker(ms.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ms.resolve(ctx)
		}
	}
}
