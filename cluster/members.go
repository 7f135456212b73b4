package cluster

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
)

// members is the current view of the cluster: every member's address,
// sorted, this replica's always among them.
type members struct {
	self     string
	src      source
	resolver Resolver
	refresh  time.Duration
	m        *metrics.Metrics
	log      *slog.Logger

	view atomic.Pointer[[]string] // replaced whole, read without a lock

	// gaugeMu guards the member gauges' series against a view changing
	// while a skip is shown: a member that left must not get its series
	// back.
	gaugeMu sync.Mutex

	mu     sync.Mutex // guards failed
	failed bool       // the last resolution failed (logged once per failure run)
}

func newMembers(src source, self string, resolver Resolver, refresh time.Duration, m *metrics.Metrics, log *slog.Logger) *members {
	ms := &members{self: self, src: src, resolver: resolver, refresh: refresh, m: m, log: log}
	initial := []string{self}
	if src.static != nil {
		initial = src.static
	}
	ms.set(initial)
	return ms
}

// current returns the view; callers must not change it.
func (ms *members) current() []string { return *ms.view.Load() }

// set installs a view: sorted, deduplicated, with self. It updates the
// member gauges: a member that left loses its series.
func (ms *members) set(addrs []string) {
	v := slices.Clone(addrs)
	if ms.self != "" && !slices.Contains(v, ms.self) {
		v = append(v, ms.self)
	}
	slices.Sort(v)
	v = slices.Compact(v)
	ms.gaugeMu.Lock()
	defer ms.gaugeMu.Unlock()
	var old []string
	if p := ms.view.Swap(&v); p != nil {
		old = *p
	}
	if slices.Equal(old, v) {
		return
	}
	for _, a := range old {
		if !slices.Contains(v, a) {
			ms.m.ClusterSkipped.DeleteLabelValues(a)
		}
	}
	for _, a := range v {
		if !slices.Contains(old, a) {
			ms.m.ClusterSkipped.WithLabelValues(a).Set(0)
		}
	}
	ms.m.ClusterMembers.Set(float64(len(v)))
	if old != nil {
		ms.log.Info("cluster members changed", "members", v, "was", old)
	}
}

// showSkip sets a member's skip gauge; an address that is not a member
// (the parent, a member that left) has none.
func (ms *members) showSkip(addr string, skipped bool) {
	ms.gaugeMu.Lock()
	defer ms.gaugeMu.Unlock()
	if !slices.Contains(ms.current(), addr) {
		return
	}
	v := 0.0
	if skipped {
		v = 1
	}
	ms.m.ClusterSkipped.WithLabelValues(addr).Set(v)
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
		if a, err := canonAddr(net.JoinHostPort(h, ms.src.port)); err == nil {
			addrs = append(addrs, a)
		}
	}
	ms.set(addrs)
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
