package cluster_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestAParentCycleCostsOneUpstreamFetch: A's parent is B and B's parent is
// A. A pull through A costs upstream one fetch of each object (and one tag
// HEAD) and succeeds: B's request comes back to A, which refuses it 508
// (oci.ViaHeader names A), and B takes that as its parent failing, fetches
// upstream itself and logs the cycle, as A logs the loop.
func TestAParentCycleCostsOneUpstreamFetch(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	up.SeedImage(t, "team/app", "v1", 2, 64<<10)
	up.Reset()
	lnA, lnB := listen(t), listen(t)
	cfgA, cfgB := replicaConfig(t, up), replicaConfig(t, up)
	cfgA.Listener, cfgA.Listen = lnA, lnA.Addr().String()
	cfgB.Listener, cfgB.Listen = lnB, lnB.Addr().String()
	cfgA.Cluster = cluster.Config{Parent: "http://" + cfgB.Listen}
	cfgB.Cluster = cluster.Config{Parent: "http://" + cfgA.Listen}
	a, b := startReplica(t, cfgA), startReplica(t, cfgB)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p := &puller.Puller{Client: &http.Client{}, Base: a.base, Namespace: up.Host()}
	res, err := p.Pull(ctx, "team/app", "v1")
	if err != nil {
		t.Fatalf("pull through a parent cycle: %v", err)
	}
	if len(res.Blobs) != 4 {
		t.Fatalf("pulled %d objects, want 4 (manifest, config, 2 layers)", len(res.Blobs))
	}
	for _, dg := range res.Blobs {
		n := up.Count(http.MethodGet, registrytest.KindManifest, string(dg)) + up.Count(http.MethodGet, registrytest.KindBlob, string(dg))
		if n != 1 {
			t.Errorf("upstream sent %s %d times, want once", dg.Short(), n)
		}
	}
	if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n != 1 {
		t.Errorf("upstream tag HEADs = %d, want 1", n)
	}
	if n := b.logs.count("ERROR", "parent cycle"); n < 1 {
		t.Errorf("B logged no parent cycle; it logged %q", b.logs.msgs)
	}
	if n := a.logs.count("ERROR", "request loop"); n != 1 {
		t.Errorf("A logged the loop %d times, want once (at most once a minute); it logged %q", n, a.logs.msgs)
	}
	if n := metric(t, a, "cacheyd_cluster_refused_total", map[string]string{"reason": "loop"}); n < 1 {
		t.Errorf("A counted %v loops, want some", n)
	}
}

// TestAParentCycleStartedFromBothEnds: A's parent is B and B's parent is A,
// and clients of both ask for the same image at once, so that each has its
// own clients' fill waiting for the other when the other's request comes
// in. A request that came through another cacheyd is not shared with a
// fill of this one's own clients that waits for its parent: it goes on to
// the parent with its chain, is refused there as a loop, and is fetched
// upstream. Both pulls succeed, each object is fetched upstream at most
// twice (once per end), and nobody waits for the answer timeout.
func TestAParentCycleStartedFromBothEnds(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	up.SeedImage(t, "team/app", "v1", 2, 64<<10)
	up.Reset()
	lnA, lnB := listen(t), listen(t)
	// A reaches B through a proxy that holds A's connections until both
	// clients' first requests are in, so that both ends start their
	// own fills before either sees the other's request.
	toB := newGatedProxy(t, lnB.Addr().String())
	cfgA, cfgB := replicaConfig(t, up), replicaConfig(t, up)
	cfgA.Listener, cfgA.Listen = lnA, lnA.Addr().String()
	cfgB.Listener, cfgB.Listen = lnB, lnB.Addr().String()
	cfgA.Cluster = cluster.Config{Parent: "http://" + toB.addr()}
	cfgB.Cluster = cluster.Config{Parent: "http://" + cfgA.Listen}
	a, b := startReplica(t, cfgA), startReplica(t, cfgB)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	pulled := make([]*puller.Result, 2)
	errs := make([]error, 2)
	for i, base := range []string{a.base, b.base} {
		wg.Go(func() {
			p := &puller.Puller{Client: &http.Client{}, Base: base, Namespace: up.Host()}
			pulled[i], errs[i] = p.Pull(ctx, "team/app", "v1")
		})
	}
	// A's client's tag lookup waits at the proxy; B's reaches A and waits
	// on A's lookup (before the fix) or goes on (after): either way, once
	// A holds a connection to B, both ends have started.
	toB.waitHeld(t, ctx, 1)
	toB.open()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull through %s of a parent cycle started from both ends: %v", []string{"A", "B"}[i], err)
		}
	}
	for _, dg := range pulled[0].Blobs {
		n := up.Count(http.MethodGet, registrytest.KindManifest, string(dg)) + up.Count(http.MethodGet, registrytest.KindBlob, string(dg))
		if n < 1 || n > 2 {
			t.Errorf("upstream sent %s %d times, want once or twice", dg.Short(), n)
		}
	}
	for _, r := range []*replica{a, b} {
		if n := metric(t, r, "cacheyd_requests_total", map[string]string{"code": "504"}); n != 0 {
			t.Errorf("%s answered %v requests 504", r.base, n)
		}
	}
}

// gatedProxy forwards TCP connections to target, holding each until open
// is called.
type gatedProxy struct {
	ln   net.Listener
	gate chan struct{}
	mu   sync.Mutex // guards held
	held int
	more chan struct{} // closed and replaced when held grows
}

func newGatedProxy(t *testing.T, target string) *gatedProxy {
	p := &gatedProxy{ln: listen(t), gate: make(chan struct{}), more: make(chan struct{})}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		p.ln.Close()
		p.open()
		conns.Wait()
	})
	// Stops when the listener closes at the end of the test.
	go func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.held++
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
			// Stops when either side closes its connection.
			conns.Go(func() {
				defer c.Close()
				<-p.gate
				d, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer d.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(d, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, d); done <- struct{}{} }()
				<-done
			})
		}
	}()
	return p
}

func (p *gatedProxy) addr() string { return p.ln.Addr().String() }

// open lets every held connection, and every later one, through.
func (p *gatedProxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// waitHeld waits until n connections came in.
func (p *gatedProxy) waitHeld(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for {
		p.mu.Lock()
		held, more := p.held, p.more
		p.mu.Unlock()
		if held >= n {
			return
		}
		select {
		case <-more:
		case <-ctx.Done():
			t.Fatalf("%d connections came in, want %d", held, n)
		}
	}
}
