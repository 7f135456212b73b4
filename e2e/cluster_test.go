//go:build linux

package e2e

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// freeAddrs returns n loopback addresses with ports free a moment ago: the
// replicas of a cluster must know each other's before any starts.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// TestTwoReplicasShare: two containerd nodes, each pointed at a different
// cacheyd replica of one cluster (--peers), pull the same image cold at
// once; upstream serves each blob and the manifest once for the cluster.
func TestTwoReplicasShare(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	im := seedImage(t, up, "e2e/cluster", "v1", 4, 1<<20)
	seen := watchAgents(up)
	bin := buildCacheyd(t)
	addrs := freeAddrs(t, 2)
	reps := make([]*cacheyd, len(addrs))
	for i, a := range addrs {
		reps[i] = startCacheyd(t, bin, "--listen", a, "--cache-dir", t.TempDir(),
			"--registry-url", up.Host()+"="+up.URL(), "--allow-registry", up.CDNHost(),
			"--peers", strings.Join(addrs, ","), "--advertise", a, "--cluster-secret", "e2e-cluster-secret-0123456789abcdef")
	}
	nodes := make([]*containerdtest.Containerd, len(reps))
	hosts := make([]string, len(reps))
	for i, cy := range reps {
		hosts[i] = t.TempDir()
		containerdtest.WriteHostsDir(t, hosts[i], up.Host(), cy.url())
		nodes[i] = containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e"})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	outs := make([]string, len(nodes))
	for i, node := range nodes {
		wg.Go(func() { outs[i], errs[i] = node.Ctr(t, "images", "pull", "--hosts-dir", hosts[i], im.ref) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: pull %s: %v\nstdout:\n%s", i, im.ref, err, outs[i])
		}
	}
	if t.Failed() {
		return
	}
	for _, node := range nodes {
		checkContent(t, node, im)
	}
	checkAllFromCacheyd(t, seen)
	for _, d := range im.blobs {
		if n := up.Count("GET", registrytest.KindCDN, d); n != 1 {
			t.Errorf("upstream's CDN served blob %s %d times to two replicas, want 1:%s", d, n, describe(up.Requests()))
		}
	}
	if n := up.Count("GET", registrytest.KindManifest, im.manifest); n != 1 {
		t.Errorf("upstream served manifest %s %d times, want 1", im.manifest, n)
	}
	asked, served := 0.0, 0.0
	for _, cy := range reps {
		asked += cy.metric(t, "cacheyd_cluster_requests_total", map[string]string{"to": "peer"})
		served += cy.metric(t, "cacheyd_cluster_served_total", nil)
	}
	if asked == 0 || asked != served {
		t.Errorf("requests to peers %v, answered for peers %v: want as many, and some", asked, served)
	}
}
