//go:build linux

package e2e

import (
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// image is what a pull of one image must leave in containerd's content
// store.
type image struct {
	registry string   // host:port
	repo     string   // repository name
	ref      string   // what ctr pulls
	manifest string   // manifest digest
	blobs    []string // config and layer digests
}

func (im image) digests() []string { return append([]string{im.manifest}, im.blobs...) }

// seedImage stores a random image of layers layers of layerSize bytes each
// in up under repo:tag.
func seedImage(t *testing.T, up *registrytest.Registry, repo, tag string, layers int, layerSize int64) image {
	t.Helper()
	return imageOf(t, up.Host(), repo, tag, up.SeedImage(t, repo, tag, layers, layerSize))
}

// imageOf is what a pull of img, named registry/repo:tag, must leave in
// containerd's content store.
func imageOf(t *testing.T, registry, repo, tag string, img v1.Image) image {
	t.Helper()
	im := image{registry: registry, repo: repo, ref: registry + "/" + repo + ":" + tag}
	must := func(h v1.Hash, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("e2e: digests of %s: %v", im.ref, err)
		}
		return h.String()
	}
	im.manifest = must(img.Digest())
	im.blobs = append(im.blobs, must(img.ConfigName()))
	ls, err := img.Layers()
	if err != nil {
		t.Fatalf("e2e: layers of %s: %v", im.ref, err)
	}
	for _, l := range ls {
		im.blobs = append(im.blobs, must(l.Digest()))
	}
	return im
}

// pull runs `ctr images pull` on node, through the mirror that hostsDir
// names when it is not empty, and fails t with ctr's output if it fails.
func pull(t *testing.T, node *containerdtest.Containerd, hostsDir, ref string, extra ...string) {
	t.Helper()
	args := []string{"images", "pull"}
	if hostsDir != "" {
		args = append(args, "--hosts-dir", hostsDir)
	}
	args = append(append(args, extra...), ref)
	if out, err := node.Ctr(t, args...); err != nil {
		t.Fatalf("e2e: pull %s: %v\nstdout:\n%s", ref, err, out)
	}
}

// contentDigests lists the digests in node's content store.
func contentDigests(t *testing.T, node *containerdtest.Containerd) map[string]bool {
	t.Helper()
	out, err := node.Ctr(t, "content", "ls", "-q")
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	have := map[string]bool{}
	for _, d := range strings.Fields(out) {
		have[d] = true
	}
	return have
}

// checkContent fails t unless node's content store holds every digest of
// im. containerd verifies each digest as it writes content, so presence
// means the bytes are right.
func checkContent(t *testing.T, node *containerdtest.Containerd, im image) {
	t.Helper()
	have := contentDigests(t, node)
	for _, d := range im.digests() {
		if !have[d] {
			t.Errorf("containerd's content store lacks %s after pulling %s; it holds %v", d, im.ref, keys(have))
		}
	}
	out, err := node.Ctr(t, "images", "ls", "-q")
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	if !strings.Contains(out, im.ref) {
		t.Errorf("containerd has no image %s after pulling it; images:\n%s", im.ref, out)
	}
}

// removeImage deletes im from node, collecting its content and snapshots
// synchronously, removes whatever content of it is left, and checks that
// none is.
func removeImage(t *testing.T, node *containerdtest.Containerd, im image) {
	t.Helper()
	if out, err := node.Ctr(t, "images", "rm", "--sync", im.ref); err != nil {
		t.Fatalf("e2e: %v\nstdout:\n%s", err, out)
	}
	have := contentDigests(t, node)
	var left []string
	for _, d := range im.digests() {
		if have[d] {
			left = append(left, d)
		}
	}
	if len(left) > 0 {
		if out, err := node.Ctr(t, append([]string{"content", "rm"}, left...)...); err != nil {
			t.Fatalf("e2e: %v\nstdout:\n%s", err, out)
		}
	}
	have = contentDigests(t, node)
	for _, d := range im.digests() {
		if have[d] {
			t.Fatalf("e2e: containerd still holds %s after removing %s", d, im.ref)
		}
	}
}

// keys lists a set's members for messages.
func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
