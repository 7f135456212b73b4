//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestContainerd2PullThroughCacheyd is a node of containerd 2: the daemon
// pulls (its transfer service, which ctr asks), the hosts directory holds
// only _default/hosts.toml naming cacheyd, and layers are fetched as
// parallel chunks (max_concurrent_downloads 3, a 64 KiB
// concurrent_layer_fetch_buffer, Range requests to the mirror). A cold
// pull fetches each blob upstream once; a pull into an emptied content
// store fetches none.
func TestContainerd2PullThroughCacheyd(t *testing.T) {
	bin2 := containerdtest.V2Bin(t)
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	im := seedImage(t, up, "e2e/chunked", "v1", 3, 300<<10)
	seen := watchAgents(up)

	bin := buildCacheyd(t)
	cy := startCacheyd(t, bin, "--cache-dir", t.TempDir(), "--registry-url", up.Host()+"="+up.URL(), "--allow-registry", up.CDNHost())
	hosts := t.TempDir()
	containerdtest.WriteDefaultHostsDir(t, hosts, cy.url())
	// config_path is what a node's other transfer clients would read; ctr
	// names the directory itself (--hosts-dir), as containerd 2.4's ctr
	// needs.
	node := containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e", Bin: bin2, HostsDir: hosts,
		MaxConcurrentDownloads: 3, ConcurrentLayerFetchBuffer: 64 << 10})
	if node.Major != 2 {
		t.Fatalf("containerd in %s is %d.x, want 2.x", bin2, node.Major)
	}

	ok := t.Run("cold", func(t *testing.T) {
		mark := cy.log.mark()
		pull(t, node, hosts, im.ref)
		checkContent(t, node, im)
		if checkAllFromCacheyd(t, seen) == 0 {
			t.Fatalf("upstream saw no request from cacheyd for a cold pull of %s", im.ref)
		}
		for _, d := range im.blobs {
			if n := up.Count("GET", registrytest.KindBlob, d); n != 1 {
				t.Errorf("upstream saw %d GETs of blob %s, want 1:%s", n, d, describe(up.Requests()))
			}
		}
		lines := checkServedOrRanged(t, cy, mark, im)
		// The layers came as chunks: windows past their first byte.
		for _, d := range im.blobs[1:] {
			chunks := 0
			for _, l := range lines {
				if l.Reference == shortDigest(d) && l.Status == 206 && l.Range != "" && !strings.HasPrefix(l.Range, "bytes 0-") {
					chunks++
				}
			}
			if chunks == 0 {
				t.Errorf("cacheyd served layer %s in no chunk past its start; containerd's parallel fetch did not reach it:\n%s", d, formatAccess(lines))
			}
		}
	})
	if !ok {
		return
	}
	t.Run("emptied content store", func(t *testing.T) {
		removeImage(t, node, im)
		up.Reset()
		seen.reset()
		mark := cy.log.mark()
		pull(t, node, hosts, im.ref)
		checkContent(t, node, im)
		checkAllFromCacheyd(t, seen)
		checkServedOrRanged(t, cy, mark, im)
		for _, r := range up.Requests() {
			if r.Kind == registrytest.KindBlob || r.Kind == registrytest.KindCDN {
				t.Errorf("a pull from cacheyd's cache fetched a blob upstream: %s %s %s", r.Host, r.Method, r.Path)
			}
		}
	})
}

// checkServedOrRanged waits (bounded) until cacheyd's access log, after
// mark, shows a successful GET (200, or 206 for a chunk) of every digest of
// im for im's registry and repository, fails t if it does not, and returns
// the lines.
func checkServedOrRanged(t *testing.T, cy *cacheyd, mark int, im image) []accessLine {
	t.Helper()
	served := func(lines []accessLine, digest string) bool {
		for _, l := range lines {
			if l.Method == "GET" && (l.Status == 200 || l.Status == 206) && l.Registry == im.registry &&
				l.Repository == im.repo && l.Reference == shortDigest(digest) {
				return true
			}
		}
		return false
	}
	lines, ok := cy.log.waitAccess(mark, 10*time.Second, func(lines []accessLine) bool {
		for _, d := range im.digests() {
			if !served(lines, d) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Errorf("cacheyd's access log lacks a GET of some of %v for %s/%s; it logged:\n%s", im.digests(), im.registry, im.repo, formatAccess(lines))
	}
	return lines
}
