//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestSkopeoThroughCacheyd: skopeo copies a multi-platform index whole
// (copy --all) and inspects it through a registries.conf mirror at
// <cacheyd>/<registry>, byte for byte as the registry holds it; and it
// lists the repository's tags through cacheyd, following the registry's
// pages (the registry pages by two) by the Links cacheyd rewrites.
func TestSkopeoThroughCacheyd(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true, TagPage: 2})
	idx := up.SeedIndex(t, "e2e/multi", "v1", []string{"linux/amd64", "linux/arm64"}, 2, 100<<10)
	for _, tag := range []string{"v2", "v3", "v4", "v5"} {
		up.WriteIndex(t, "e2e/multi", tag, idx)
	}
	up.Reset()
	seen := watchAgents(up)
	cy := startCacheyd(t, buildCacheyd(t), "--cache-dir", t.TempDir(),
		"--registry-url", registryName+"="+up.URL(), "--allow-registry", up.CDNHost())
	skopeo := newContainersTool(t, "skopeo", cy.addr+"/"+registryName)
	ref := "docker://" + registryName + "/e2e/multi:v1"
	direct := "docker://" + cy.addr + "/" + registryName + "/e2e/multi"
	want := indexDigests(t, idx)

	t.Run("copy --all", func(t *testing.T) {
		// The dir: transport keeps every manifest and blob as it came:
		// manifest.json the index, <hex>.manifest.json each platform's
		// manifest, <hex> each blob.
		out := filepath.Join(t.TempDir(), "copy")
		skopeo.mustRun(t, "--insecure-policy", "copy", "--all", "--quiet", ref, "dir:"+out)
		// skopeo writes the index anew (it is free to, without
		// --preserve-digests, which its 1.9 refuses for an OCI index),
		// naming the same platform manifests; the bytes cacheyd served
		// are checked by inspect --raw below.
		var index v1.IndexManifest
		readJSON(t, filepath.Join(out, "manifest.json"), &index)
		var listed []string
		for _, m := range index.Manifests {
			listed = append(listed, m.Digest.String())
		}
		if !slices.Equal(listed, want.manifests) {
			t.Errorf("copied index lists %v, want %v", listed, want.manifests)
		}
		for _, d := range want.manifests {
			checkCopied(t, filepath.Join(out, hexOf(t, d)+".manifest.json"), d)
		}
		for _, d := range want.blobs {
			checkCopied(t, filepath.Join(out, hexOf(t, d)), d)
		}
		checkAllFromCacheyd(t, seen)
		for _, d := range want.blobs {
			if n := up.Count("GET", registrytest.KindBlob, d); n != 1 {
				t.Errorf("upstream saw %d GETs of blob %s, want 1:%s", n, d, describe(up.Requests()))
			}
		}
	})
	t.Run("inspect", func(t *testing.T) {
		raw := skopeo.mustRun(t, "inspect", "--raw", "--no-tags", ref)
		if got := digestOf(t, raw); got != want.index {
			t.Errorf("inspect --raw through the mirror: digest %s, want the index %s unaltered", got, want.index)
		}
		// With tags: containers/image lists them, page after page,
		// through cacheyd.
		var info struct{ RepoTags []string }
		if err := json.Unmarshal([]byte(skopeo.mustRun(t, "inspect", "--tls-verify=false", direct+":v1")), &info); err != nil {
			t.Fatal(err)
		}
		if wantTags := []string{"v1", "v2", "v3", "v4", "v5"}; !slices.Equal(info.RepoTags, wantTags) {
			t.Errorf("inspect through cacheyd lists tags %v, want %v", info.RepoTags, wantTags)
		}
	})
	t.Run("list-tags", func(t *testing.T) {
		var list struct{ Tags []string }
		if err := json.Unmarshal([]byte(skopeo.mustRun(t, "list-tags", "--tls-verify=false", direct)), &list); err != nil {
			t.Fatal(err)
		}
		if wantTags := []string{"v1", "v2", "v3", "v4", "v5"}; !slices.Equal(list.Tags, wantTags) {
			t.Errorf("list-tags through cacheyd = %v, want %v", list.Tags, wantTags)
		}
		// Three pages, each fetched upstream once (as cacheyd): inspect's
		// listing and this one shared them within --tag-ttl.
		if n := up.Count("GET", registrytest.KindTags, ""); n != 3 {
			t.Errorf("upstream saw %d tag list GETs, want 3 (pages of 2 of 5 tags):%s", n, describe(up.Requests()))
		}
		checkAllFromCacheyd(t, seen)
	})
}

// indexed are the digests of an index: the index, its manifests and every
// blob (configs and layers).
type indexed struct {
	index     string
	manifests []string
	blobs     []string
}

func indexDigests(t *testing.T, idx v1.ImageIndex) indexed {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out := indexed{index: d.String()}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range m.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		im, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		out.manifests = append(out.manifests, desc.Digest.String())
		out.blobs = append(out.blobs, im.Config.Digest.String())
		for _, l := range im.Layers {
			out.blobs = append(out.blobs, l.Digest.String())
		}
	}
	return out
}

// checkCopied fails t unless the file at path holds the content of digest d.
func checkCopied(t *testing.T, path, d string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("copy lacks %s: %v", d, err)
		return
	}
	if got := digestOf(t, string(b)); got != d {
		t.Errorf("copy of %s has digest %s", d, got)
	}
}

func hexOf(t *testing.T, d string) string {
	t.Helper()
	h, err := v1.NewHash(d)
	if err != nil {
		t.Fatal(err)
	}
	return h.Hex
}

func digestOf(t *testing.T, s string) string {
	t.Helper()
	h, _, err := v1.SHA256(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
