//go:build linux

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestPullThroughCacheyd is the node's view: containerd pulls an image
// through cacheyd, twice on one node (removing it in between), once on a
// fresh node, and once more on another fresh node after cacheyd restarts on
// the same cache directory; upstream serves each blob exactly once in all.
func TestPullThroughCacheyd(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	im := seedImage(t, up, "e2e/app", "v1", 3, 300<<10)
	seen := watchAgents(up)

	bin, cacheDir := buildCacheyd(t), t.TempDir()
	args := []string{"--cache-dir", cacheDir, "--registry-url", up.Host() + "=" + up.URL(), "--allow-registry", up.CDNHost()}
	cy := startCacheyd(t, bin, args...)
	hosts := t.TempDir()
	containerdtest.WriteHostsDir(t, hosts, up.Host(), cy.url())
	nodeA := containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e"})

	ok := t.Run("cold", func(t *testing.T) {
		mark := cy.log.mark()
		pull(t, nodeA, hosts, im.ref)
		checkContent(t, nodeA, im)
		if checkAllFromCacheyd(t, seen) == 0 {
			t.Fatalf("upstream saw no request from cacheyd for a cold pull of %s", im.ref)
		}
		for _, d := range im.blobs {
			if n := up.Count("GET", registrytest.KindBlob, d); n != 1 {
				t.Errorf("upstream saw %d GETs of blob %s, want 1:%s", n, d, describe(up.Requests()))
			}
			if n := up.Count("GET", registrytest.KindCDN, d); n != 1 {
				t.Errorf("upstream's CDN served blob %s %d times, want 1:%s", d, n, describe(up.Requests()))
			}
		}
		checkServed(t, cy, mark, im, 1, nil)
		// containerd names the registry it meant in ?ns=; cacheyd routed
		// by it, so upstream requests are counted under that registry.
		if n := cy.metric(t, "cacheyd_upstream_requests_total", map[string]string{"registry": up.Host()}); n == 0 {
			t.Errorf("cacheyd counted no upstream request to registry %s (from ?ns=)", up.Host())
		}
	})
	if !ok {
		return
	}

	// warm pulls on node through cy (which hosts names as the mirror); cy
	// must serve every digest from one of sources and fetch none upstream.
	warm := func(t *testing.T, node *containerdtest.Containerd, hosts string, cy *cacheyd, sources []string) {
		t.Helper()
		up.Reset()
		seen.reset()
		mark := cy.log.mark()
		pull(t, node, hosts, im.ref)
		checkContent(t, node, im)
		checkAllFromCacheyd(t, seen)
		checkServed(t, cy, mark, im, 1, sources)
		// Only the tag may be looked up again; content by digest is
		// immutable and must come from cacheyd's tiers.
		for _, r := range up.Requests() {
			switch {
			case r.Kind == registrytest.KindBlob || r.Kind == registrytest.KindCDN:
				t.Errorf("warm pull fetched a blob upstream: %s %s %s", r.Host, r.Method, r.Path)
			case r.Kind == registrytest.KindManifest && strings.HasPrefix(r.Ref, "sha256:"):
				t.Errorf("warm pull fetched a manifest by digest upstream: %s %s", r.Method, r.Path)
			}
		}
	}
	t.Run("same node after removing the image", func(t *testing.T) {
		removeImage(t, nodeA, im)
		warm(t, nodeA, hosts, cy, []string{"memory", "disk"})
	})
	t.Run("fresh node", func(t *testing.T) {
		nodeB := containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e"})
		warm(t, nodeB, hosts, cy, []string{"memory", "disk"})
	})
	t.Run("fresh node after cacheyd restarts", func(t *testing.T) {
		// The memory tier is gone with the process; the disk tier stays.
		// The new process listens on another port, so the new node's
		// hosts dir names that one.
		cy.stop(t)
		restarted := startCacheyd(t, bin, args...)
		hosts := t.TempDir()
		containerdtest.WriteHostsDir(t, hosts, up.Host(), restarted.url())
		nodeC := containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e"})
		warm(t, nodeC, hosts, restarted, []string{"disk"})
	})
}

// checkAllFromCacheyd fails t unless every request upstream saw came from
// cacheyd (by its User-Agent): containerd used the mirror for everything and
// never fell back to the registry itself. It returns how many there were.
func checkAllFromCacheyd(t *testing.T, seen *agents) int {
	t.Helper()
	others, total := seen.notFrom("cacheyd")
	for _, o := range others {
		t.Errorf("upstream got %s %s from User-Agent %q, not cacheyd: containerd went around the mirror", o.method, o.path, o.userAgent)
	}
	return total
}

// checkServed waits (bounded) until cacheyd's access log, after mark, shows
// at least each successful GETs of every digest of im for im's registry
// (which only ?ns= can have named: the mirror's paths carry no registry),
// and fails t if it does not, or if one of those GETs came from a source
// not in sources (nil allows any).
func checkServed(t *testing.T, cy *cacheyd, mark int, im image, each int, sources []string) {
	t.Helper()
	registry := im.registry
	repo := im.repo
	served := func(lines []accessLine, digest string) []accessLine {
		var out []accessLine
		for _, l := range lines {
			if l.Method == "GET" && l.Status == 200 && l.Registry == registry && l.Repository == repo && l.Reference == shortDigest(digest) {
				out = append(out, l)
			}
		}
		return out
	}
	lines, ok := cy.log.waitAccess(mark, 10*time.Second, func(lines []accessLine) bool {
		for _, d := range im.digests() {
			if len(served(lines, d)) < each {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Errorf("cacheyd's access log lacks %d 200 GETs for registry %s, repository %s of some of %v; it logged:\n%s", each, registry, repo, im.digests(), formatAccess(lines))
		return
	}
	if sources == nil {
		return
	}
	for _, d := range im.digests() {
		for _, l := range served(lines, d) {
			if !slices.Contains(sources, l.Source) {
				t.Errorf("cacheyd served %s %s from %q, want one of %v", l.Kind, d, l.Source, sources)
			}
		}
	}
}

// shortDigest is how the access log writes a digest: 12 hex digits (a tag
// stays as it is).
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok {
		return d
	}
	return alg + ":" + hex[:min(len(hex), 12)]
}

// formatAccess lists access lines for failure messages.
func formatAccess(lines []accessLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s %s %s %s %s -> %d (%s) %s\n", l.Method, l.Kind, l.Registry, l.Repository, l.Reference, l.Status, l.Source, l.Range)
	}
	return b.String()
}
