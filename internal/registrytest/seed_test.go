package registrytest

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestSeedIndex(t *testing.T) {
	reg := New(t, Options{Token: true, Redirect: true})
	platforms := []string{"linux/amd64", "linux/arm64/v8"}
	seeded := reg.SeedIndex(t, "library/busybox", "1.36", platforms, 2, 1000)

	idx, err := remote.Index(ref(t, reg, "library/busybox:1.36"), pullOptions(t, reg, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := seeded.Digest()
	if got, _ := idx.Digest(); got != want {
		t.Fatalf("index digest %s, seeded %s", got, want)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, desc := range im.Manifests {
		got = append(got, desc.Platform.String())
		img, err := remote.Image(ref(t, reg, "library/busybox@"+desc.Digest.String()), pullOptions(t, reg, nil)...)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if p := cf.Platform(); p == nil || !p.Equals(*desc.Platform) {
			t.Errorf("image %s config platform %v, descriptor says %v", desc.Digest, p, desc.Platform)
		}
		readAll(t, img)
	}
	if diff := cmp.Diff(platforms, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
}

func TestSeedImage(t *testing.T) {
	reg := New(t, Options{})
	img := reg.SeedImage(t, "app", "v1", 3, 5000)
	layers, _ := img.Layers()
	if len(layers) != 3 {
		t.Fatalf("%d layers, want 3", len(layers))
	}
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		if d != diff || size < 5000 || size > 5000+2048 || seen[d] {
			t.Errorf("layer %s: diff ID %s, size %d, repeated %v", d, diff, size, seen[d])
		}
		seen[d] = true
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s", mt)
	}
}

func TestSeedByDigestOnly(t *testing.T) {
	reg := New(t, Options{})
	img := reg.SeedImage(t, "app", "", 1, 10)
	d, _ := img.Digest()
	if resp := get(t, reg, "/v2/app/manifests/"+d.String(), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("by digest: %d", resp.StatusCode)
	}
	if resp := get(t, reg, "/v2/app/tags/list", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("tags/list: %d", resp.StatusCode)
	}
}

func TestSeedBlob(t *testing.T) {
	reg := New(t, Options{})
	content := []byte("not a tar at all")
	d := reg.SeedBlob(t, "app", content)
	resp, got, err := blobBody(t, reg, d.String(), nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Errorf("GET seeded blob: %d %q %v", resp.StatusCode, got, err)
	}
	if n := reg.Count("", "", ""); n != 1 {
		t.Errorf("Count = %d, want 1 (seeding is not recorded)", n)
	}
}
