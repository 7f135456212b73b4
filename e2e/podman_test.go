//go:build linux

package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestPodmanPullThroughMirror: podman pulls through a registries.conf
// mirror at <cacheyd>/<registry> (the path-prefix route: no ns), into a
// vfs store of its own; upstream serves each blob once, and a second pull
// after removing the image fetches none.
func TestPodmanPullThroughMirror(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	seeded := seedImage(t, up, "e2e/podman", "v1", 3, 200<<10)
	seen := watchAgents(up)
	cy := startCacheyd(t, buildCacheyd(t), "--cache-dir", t.TempDir(),
		"--registry-url", registryName+"="+up.URL(), "--allow-registry", up.CDNHost())
	podman := newContainersTool(t, "podman", cy.addr+"/"+registryName)
	store := t.TempDir()
	global := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--tmpdir", filepath.Join(store, "tmp")}
	ref := registryName + "/" + seeded.repo + ":v1"
	im := seeded
	im.registry = registryName // as cacheyd names it: the path's prefix

	pullOnce := func(t *testing.T) {
		t.Helper()
		mark := cy.log.mark()
		podman.mustRun(t, append(global, "pull", "--quiet", "--signature-policy", podman.policy(), ref)...)
		digest := strings.TrimSpace(podman.mustRun(t, append(global, "image", "inspect", "--format", "{{.Digest}}", ref)...))
		if digest != im.manifest {
			t.Errorf("podman holds %s as %q, want %s", ref, digest, im.manifest)
		}
		checkAllFromCacheyd(t, seen)
		// podman asks for the manifest by tag, the blobs by digest.
		tagged := im
		tagged.manifest = "v1"
		lines := checkServedOrRanged(t, cy, mark, tagged)
		for _, l := range lines {
			if l.Repository != "" && l.Registry != registryName {
				t.Errorf("cacheyd routed %s %s to registry %q, want %s (the path prefix)", l.Method, l.Reference, l.Registry, registryName)
			}
		}
	}
	t.Run("cold", func(t *testing.T) {
		pullOnce(t)
		for _, d := range im.blobs {
			if n := up.Count("GET", registrytest.KindBlob, d); n != 1 {
				t.Errorf("upstream saw %d GETs of blob %s, want 1:%s", n, d, describe(up.Requests()))
			}
		}
	})
	t.Run("again after rmi", func(t *testing.T) {
		podman.mustRun(t, append(global, "rmi", ref)...)
		up.Reset()
		seen.reset()
		pullOnce(t)
		for _, r := range up.Requests() {
			if r.Kind == registrytest.KindBlob || r.Kind == registrytest.KindCDN {
				t.Errorf("a warm pull fetched a blob upstream: %s %s %s", r.Host, r.Method, r.Path)
			}
		}
	})
}
