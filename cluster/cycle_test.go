package cluster_test

import (
	"context"
	"net/http"
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
