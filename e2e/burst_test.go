//go:build linux

package e2e

import (
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestBurstPull is a node burst: several fresh containerds pull the same
// image through one cacheyd at the same time. However their requests
// interleave (joining a fill in flight, or hitting what it stored), upstream
// must serve each blob exactly once.
func TestBurstPull(t *testing.T) {
	const nodes = 4
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	im := seedImage(t, up, "e2e/burst", "v1", 3, 1<<20)
	seen := watchAgents(up)

	cy := startCacheyd(t, buildCacheyd(t),
		"--cache-dir", t.TempDir(),
		"--registry-url", up.Host()+"="+up.URL(), "--allow-registry", up.CDNHost())
	hosts := t.TempDir()
	containerdtest.WriteHostsDir(t, hosts, up.Host(), cy.url())

	fleet := make([]*containerdtest.Containerd, nodes)
	for i := range fleet {
		fleet[i] = containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e"})
	}
	mark := cy.log.mark()
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	outs := make([]string, nodes)
	for i, node := range fleet {
		wg.Go(func() {
			outs[i], errs[i] = node.Ctr(t, "images", "pull", "--hosts-dir", hosts, im.ref)
		})
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
	for _, node := range fleet {
		checkContent(t, node, im)
	}
	checkAllFromCacheyd(t, seen)
	for _, d := range im.blobs {
		if n := up.Count("GET", registrytest.KindCDN, d); n != 1 {
			t.Errorf("upstream's CDN served blob %s %d times to a burst of %d nodes, want 1:%s", d, n, nodes, describe(up.Requests()))
		}
	}
	checkServed(t, cy, mark, im, nodes, nil)
}
