package cluster_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// dns is a fake headless Service: the addresses it answers with, and
// which replica looked it up under which answer.
type dns struct {
	mu      sync.Mutex // guards the fields below
	answer  []string
	gen     int
	lookups map[[2]int]int // {replica, gen} → lookups
	changed chan struct{}  // closed and replaced on every lookup
}

func newDNS(answer ...string) *dns {
	return &dns{answer: answer, lookups: map[[2]int]int{}, changed: make(chan struct{})}
}

// set changes the answer.
func (d *dns) set(answer ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answer = answer
	d.gen++
}

// resolver is replica i's view of d.
func (d *dns) resolver(i int) cluster.Resolver {
	return lookupFunc(func() []string { return d.lookup(i) })
}

func (d *dns) lookup(i int) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups[[2]int{i, d.gen}]++
	close(d.changed)
	d.changed = make(chan struct{})
	return slices.Clone(d.answer)
}

// seen waits until each of replicas has looked the current answer up
// twice: its view holds that answer (a view is set before the next
// lookup starts).
func (d *dns) seen(ctx context.Context, replicas ...int) error {
	for {
		d.mu.Lock()
		done := true
		for _, i := range replicas {
			done = done && d.lookups[[2]int{i, d.gen}] >= 2
		}
		ch := d.changed
		d.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replicas %v did not look up the new members: %w", replicas, ctx.Err())
		}
	}
}

type lookupFunc func() []string

func (f lookupFunc) LookupHost(context.Context, string) ([]string, error) { return f(), nil }

// sharedPortListeners listens on 127.0.0.1, 127.0.0.2, ... with one port,
// as the pods behind a headless Service share theirs.
func sharedPortListeners(t *testing.T, n int) ([]net.Listener, string) {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr().String())
		lns := []net.Listener{first}
		for i := 2; i <= n; i++ {
			ln, err := net.Listen("tcp", "127.0.0."+strconv.Itoa(i)+":"+port)
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) == n {
			return lns, port
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatal("no port free on 127.0.0.1 to 127.0.0.n")
	return nil, ""
}

// TestAReplicaJoinsAndOneLeavesDuringABurst: a burst runs while a fourth
// replica joins the headless Service's answer and then the third leaves
// it. Every node gets every byte, verified; keys move only to the newcomer
// or from the leaver, so upstream sends each object at most twice.
func TestAReplicaJoinsAndOneLeavesDuringABurst(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	up.SeedImage(t, "team/app", "v1", 4, 1<<20)
	release := make(chan struct{})
	// Blobs stop after their first 64 KiB until the membership changes
	// are done: the burst's fills are all in flight across them.
	up.SetHook(registrytest.HoldAfter(up.BlobBytes(""), 64<<10, release))
	up.Reset()

	lns, port := sharedPortListeners(t, 4)
	d := newDNS("127.0.0.1", "127.0.0.2", "127.0.0.3")
	reps := make([]*replica, 4)
	for i := range reps {
		cfg := replicaConfig(t, up)
		cfg.Listener, cfg.Listen = lns[i], lns[i].Addr().String()
		cfg.Cluster = cluster.Config{Peers: []string{"dns:cacheyd-peers.test:" + port}, Advertise: cfg.Listen, Secret: clusterSecret,
			Refresh: 20 * time.Millisecond, Resolver: d.resolver(i)}
		reps[i] = startReplica(t, cfg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	var mu sync.Mutex // guards results
	var results []*puller.Result
	burst := func(replicas ...int) {
		for _, i := range replicas {
			wg.Go(func() {
				p := &puller.Puller{Client: &http.Client{}, Base: reps[i].base, Namespace: up.Host(), Resume: 3}
				res, err := p.Pull(ctx, "team/app", "v1")
				if err != nil {
					t.Errorf("node on replica %d: %v", i, err)
					return
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			})
		}
	}
	burst(0, 1, 2, 0, 1, 2, 0, 1, 2)
	if err := up.Wait(ctx, up.BlobBytes(""), 1); err != nil {
		t.Fatal(err)
	}
	d.set("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
	if err := d.seen(ctx, 0, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	burst(0, 1, 2, 3, 3)
	d.set("127.0.0.1", "127.0.0.2", "127.0.0.4")
	if err := d.seen(ctx, 0, 1, 3); err != nil {
		t.Fatal(err)
	}
	burst(0, 1, 3)
	close(release)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if len(results) != 17 {
		t.Fatalf("%d pulls finished, want 17", len(results))
	}
	for _, res := range results {
		if len(res.Blobs) != 6 || res.Bytes != results[0].Bytes {
			t.Errorf("a pull fetched %d objects (%d bytes), want 6 (%d bytes)", len(res.Blobs), res.Bytes, results[0].Bytes)
		}
	}
	for _, dg := range results[0].Blobs {
		n := up.Count(http.MethodGet, registrytest.KindManifest, string(dg)) + up.Count(http.MethodGet, registrytest.KindCDN, string(dg))
		if n < 1 || n > 2 {
			t.Errorf("upstream sent %s %d times, want once or twice", dg.Short(), n)
		}
		t.Logf("upstream sent %s %d times", dg.Short(), n)
	}
	if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n > 2 {
		t.Errorf("upstream tag HEADs = %d, want at most 2", n)
	}
	if n := metric(t, reps[3], "cacheyd_cluster_members", nil); n != 3 {
		t.Errorf("the newcomer sees %v members, want 3", n)
	}
}
