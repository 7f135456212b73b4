package puller

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// descriptors are the config and layers of img.
func descriptors(t *testing.T, img v1.Image) []v1.Descriptor {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return append([]v1.Descriptor{m.Config}, m.Layers...)
}

func digests(ds []v1.Descriptor) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Digest.String())
	}
	return out
}

// Image picks the platforms asked for from an index, every one when none
// is, never an attestation, and fetches nothing else.
func TestImagePlatforms(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	idx, attDigest := up.SeedIndexWithAttestation(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64/v8"}, 2, 1<<10)
	idxDigest, _ := idx.Digest()
	im, _ := idx.IndexManifest()
	amd, _ := idx.Image(im.Manifests[0].Digest)
	arm, _ := idx.Image(im.Manifests[1].Digest)

	tests := []struct {
		name      string
		platforms []string
		want      []v1.Image
		wantErr   string
	}{
		{name: "every one", want: []v1.Image{amd, arm}},
		{name: "one", platforms: []string{"linux/amd64"}, want: []v1.Image{amd}},
		{name: "variant implied", platforms: []string{"linux/arm64"}, want: []v1.Image{arm}},
		{name: "absent", platforms: []string{"linux/s390x"}, wantErr: "no manifest for linux/s390x (it has linux/amd64, linux/arm64/v8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			p := &Puller{Client: up.Client(), Base: up.URL()}
			for _, s := range tt.platforms {
				p.Platforms = append(p.Platforms, platform(t, s))
			}
			img, err := p.Image(t.Context(), "team/app", "v1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Image: %v, want an error with %q", err, tt.wantErr)
				}
				if img == nil || len(img.Manifests) != 1 || string(img.Digest) != idxDigest.String() {
					t.Errorf("Image on error %+v, want the index read", img)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var wantBlobs, wantManifests, gotManifests, wantPlatforms, gotPlatforms []string
			wantManifests = append(wantManifests, idxDigest.String())
			for _, w := range tt.want {
				d, _ := w.Digest()
				wantManifests = append(wantManifests, d.String())
				cf, _ := w.ConfigFile()
				wantPlatforms = append(wantPlatforms, cf.Platform().String())
				wantBlobs = append(wantBlobs, digests(descriptors(t, w))...)
			}
			for _, m := range img.Manifests {
				gotManifests = append(gotManifests, string(m.Digest))
			}
			for _, pl := range img.Platforms {
				gotPlatforms = append(gotPlatforms, pl.String())
			}
			if diff := cmp.Diff(wantManifests, gotManifests); diff != "" {
				t.Errorf("manifests (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantPlatforms, gotPlatforms); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantBlobs, digests(img.Blobs)); diff != "" {
				t.Errorf("blobs (-want +got):\n%s", diff)
			}
			if n := up.Count(http.MethodGet, registrytest.KindManifest, attDigest.String()); n != 0 {
				t.Errorf("attestation GETs = %d, want 0", n)
			}
			if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != 0 {
				t.Errorf("blob GETs = %d, want 0: Image reads manifests only", n)
			}
		})
	}
}

// A layer listed twice is one blob; a foreign layer is none.
func TestImageBlobsOnceNoForeign(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	l, err := registrytest.RandomLayer(1 << 10)
	if err != nil {
		t.Fatal(err)
	}
	f := static.NewLayer([]byte("windows base"), types.DockerForeignLayer)
	img, err := mutate.Append(empty.Image,
		mutate.Addendum{Layer: l}, mutate.Addendum{Layer: l},
		mutate.Addendum{Layer: f, MediaType: types.DockerForeignLayer, URLs: []string{"https://example.invalid/base"}})
	if err != nil {
		t.Fatal(err)
	}
	up.WriteImage(t, "app", "v1", img)
	p := &Puller{Client: up.Client(), Base: up.URL()}
	got, err := p.Image(t.Context(), "app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	all := descriptors(t, img)
	if diff := cmp.Diff(digests(all[:2]), digests(got.Blobs)); diff != "" {
		t.Errorf("blobs (-want +got):\n%s", diff)
	}
}

// Indexes may hold indexes, to a bound.
func TestImageNestedIndexes(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	leaf := up.SeedImage(t, "app", "", 1, 10)
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: leaf})
	for depth := 1; depth <= maxIndexDepth+1; depth++ {
		outer := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: idx})
		up.WriteIndex(t, "app", "v1", outer)
		idx = outer
		p := &Puller{Client: up.Client(), Base: up.URL()}
		img, err := p.Image(t.Context(), "app", "v1")
		switch {
		case depth < maxIndexDepth && (err != nil || len(img.Blobs) != 2):
			t.Errorf("%d indexes deep: %v, %+v", depth+1, err, img)
		case depth >= maxIndexDepth && (err == nil || !strings.Contains(err.Error(), "nested deeper")):
			t.Errorf("%d indexes deep: %v, want too deep", depth+1, err)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	for _, s := range []string{"linux/amd64", "linux/arm64/v8"} {
		if p, err := ParsePlatform(s); err != nil || p.String() != s {
			t.Errorf("ParsePlatform(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "amd64", "linux/", "/amd64", "a/b/c/d"} {
		if _, err := ParsePlatform(s); err == nil {
			t.Errorf("ParsePlatform(%q): no error", s)
		}
	}
}
