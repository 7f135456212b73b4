//go:build linux

package e2e

import (
	"testing"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestBaselineDirectPull pulls from the fake registry without cacheyd, with
// the same token and redirect behaviour the mirror tests use. When this
// fails, containerd and the fake registry disagree, and a failure of the
// mirror tests says nothing about cacheyd. It also proves that removeImage
// really empties containerd: the pull after it fetches every blob again, so
// a warm pull through cacheyd that fetches none was served by cacheyd.
func TestBaselineDirectPull(t *testing.T) {
	node := containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e"})
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	im := seedImage(t, up, "e2e/app", "v1", 3, 300<<10)

	// A hosts.toml with only `server` is containerd's plain-HTTP way to a
	// registry; without one, ctr needs --plain-http.
	for round := 1; round <= 2; round++ {
		if round > 1 {
			removeImage(t, node, im)
		}
		pull(t, node, "", im.ref, "--plain-http")
		checkContent(t, node, im)
		for _, d := range im.blobs {
			if n := up.Count("GET", registrytest.KindCDN, d); n != round {
				t.Errorf("after pull %d, the CDN served blob %s %d times, want %d; upstream saw:%s", round, d, n, round, describe(up.Requests()))
			}
		}
	}
}
