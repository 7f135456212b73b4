package warm

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// These tests point the warm straight at a fake registry, which ignores
// ?ns= and has no /metrics: they check what is requested and received.
// cmd/cacheyd's tests run it through a real cacheyd.

func image(t *testing.T, up *registrytest.Registry, ref string) Image {
	t.Helper()
	im, err := ParseImage(up.Host() + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// blobsOf returns the config and layer descriptors of img.
func blobsOf(t *testing.T, img v1.Image) []v1.Descriptor {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return append([]v1.Descriptor{m.Config}, m.Layers...)
}

func imageOf(t *testing.T, idx v1.ImageIndex, platform string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.String() == platform {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s in index", platform)
	return nil
}

func TestRunPlatforms(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	idx, attDigest := up.SeedIndexWithAttestation(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64/v8"}, 2, 4<<10)
	idxDigest, _ := idx.Digest()
	amd, arm := imageOf(t, idx, "linux/amd64"), imageOf(t, idx, "linux/arm64/v8")

	tests := []struct {
		name      string
		platforms []string
		want      []v1.Image
		wantErr   string
	}{
		{name: "all", want: []v1.Image{amd, arm}},
		{name: "one", platforms: []string{"linux/amd64"}, want: []v1.Image{amd}},
		{name: "variant implied", platforms: []string{"linux/arm64"}, want: []v1.Image{arm}},
		{name: "both named", platforms: []string{"linux/arm64/v8", "linux/amd64"}, want: []v1.Image{amd, arm}},
		{name: "absent", platforms: []string{"linux/s390x"}, wantErr: "no manifest for linux/s390x (it has linux/amd64, linux/arm64/v8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			var plats []v1.Platform
			for _, p := range tt.platforms {
				pp, err := v1.ParsePlatform(p)
				if err != nil {
					t.Fatal(err)
				}
				plats = append(plats, *pp)
			}
			var started atomic.Int64
			var progress atomic.Int64
			res, err := Run(t.Context(), Config{
				Target: up.URL(), Platforms: plats,
				OnStart: func(_ int, n int64) { started.Add(n) },
				OnBytes: func(n int64) { progress.Add(n) },
			}, []Image{image(t, up, "team/app:v1")})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run: %v, want an error with %q", err, tt.wantErr)
				}
				if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != 0 {
					t.Errorf("blob GETs = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var wantBlobs int
			var wantBlobBytes int64
			wantManifests := 1 // the index
			wantBytes, _ := idx.Size()
			var wantPlatforms []string
			for _, img := range tt.want {
				wantManifests++
				n, _ := img.Size()
				wantBytes += n
				cf, _ := img.ConfigFile()
				wantPlatforms = append(wantPlatforms, cf.Platform().String())
				for _, d := range blobsOf(t, img) {
					wantBlobs++
					wantBlobBytes += d.Size
					if got := up.Count(http.MethodGet, registrytest.KindBlob, d.Digest.String()); got != 1 {
						t.Errorf("GETs of blob %s = %d, want 1", d.Digest, got)
					}
				}
			}
			wantBytes += wantBlobBytes
			if got := up.Count(http.MethodGet, registrytest.KindBlob, ""); got != wantBlobs {
				t.Errorf("blob GETs = %d, want %d", got, wantBlobs)
			}
			if got := up.Count(http.MethodGet, registrytest.KindManifest, ""); got != wantManifests {
				t.Errorf("manifest GETs = %d, want %d", got, wantManifests)
			}
			if got := up.Count(http.MethodGet, registrytest.KindManifest, attDigest.String()); got != 0 {
				t.Errorf("attestation manifest GETs = %d, want 0", got)
			}
			if got := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); got != 1 {
				t.Errorf("HEADs of the tag = %d, want 1", got)
			}
			ir := res.Images[0]
			got := Result{Manifests: res.Manifests, Blobs: res.Blobs, Bytes: res.Bytes, Fetched: res.Fetched}
			want := Result{Manifests: wantManifests, Blobs: wantBlobs, Bytes: wantBytes, Fetched: -1}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			if ir.Err != nil || ir.Digest.String() != idxDigest.String() || ir.Blobs != wantBlobs || ir.Bytes != wantBlobBytes {
				t.Errorf("image result %+v, want digest %s, %d blobs, %d bytes", ir, idxDigest, wantBlobs, wantBlobBytes)
			}
			if diff := cmp.Diff(wantPlatforms, ir.Platforms); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
			if started.Load() != wantBlobBytes || progress.Load() != wantBlobBytes {
				t.Errorf("progress: planned %d, reported %d, want %d", started.Load(), progress.Load(), wantBlobBytes)
			}
			if res.Cached() != -1 {
				t.Errorf("Cached() = %d without metrics, want -1", res.Cached())
			}
		})
	}
}

// TestRunFetchesSharedBlobsOnce: images that share layers, and the same
// image under two names, cost one GET per distinct blob.
func TestRunFetchesSharedBlobsOnce(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Redirect: true})
	base := up.SeedImage(t, "team/base", "v1", 2, 8<<10)
	layer, err := registrytest.RandomLayer(4 << 10)
	if err != nil {
		t.Fatal(err)
	}
	app, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	up.WriteImage(t, "team/app", "v1", app)
	baseDigest, _ := base.Digest()
	up.Reset()

	images := []Image{
		image(t, up, "team/base:v1"),
		image(t, up, "team/app:v1"),
		image(t, up, "team/base@"+baseDigest.String()),
	}
	res, err := Run(t.Context(), Config{Target: up.URL() + "/", Parallel: 2}, images)
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[v1.Hash]int64{}
	for _, img := range []v1.Image{base, app} {
		for _, d := range blobsOf(t, img) {
			distinct[d.Digest] = d.Size
		}
	}
	for d := range distinct {
		if n := up.Count(http.MethodGet, registrytest.KindCDN, d.String()); n != 1 {
			t.Errorf("GETs of blob %s = %d, want 1", d, n)
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindCDN, ""); n != len(distinct) {
		t.Errorf("blob GETs = %d, want %d", n, len(distinct))
	}
	if res.Blobs != len(distinct) {
		t.Errorf("Result.Blobs = %d, want %d", res.Blobs, len(distinct))
	}
	// The config of app differs from base's; app has base's 2 layers and 1 more.
	for i, want := range []int{3, 4, 3} {
		if got := res.Images[i].Blobs; got != want || res.Images[i].Err != nil {
			t.Errorf("image %d: %d blobs, err %v; want %d blobs", i, got, res.Images[i].Err, want)
		}
	}
}

// TestRunReportsEachFailure: one image that does not exist, one whose layer
// arrives damaged, and one that is fine: the fine one is warmed, the others
// say why, and Run's error names both.
func TestRunReportsEachFailure(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	good := up.SeedImage(t, "team/good", "v1", 1, 2<<10)
	bad := up.SeedImage(t, "team/bad", "v1", 1, 2<<10)
	badLayer := blobsOf(t, bad)[1].Digest.String()
	up.SetHook(registrytest.Corrupt(up.BlobBytes(badLayer), 100))
	up.Reset()

	res, err := Run(t.Context(), Config{Target: up.URL()}, []Image{
		image(t, up, "team/missing:v1"), image(t, up, "team/bad:v1"), image(t, up, "team/good:v1"),
	})
	if err == nil {
		t.Fatal("Run succeeded, want an error")
	}
	for _, s := range []string{"team/missing:v1: HEAD manifest v1: 404", "team/bad:v1: blob", puller.ErrDigestMismatch.Error()} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if !errors.Is(res.Images[1].Err, puller.ErrDigestMismatch) {
		t.Errorf("bad image: %v, want a digest mismatch", res.Images[1].Err)
	}
	if res.Images[0].Err == nil || res.Images[2].Err != nil {
		t.Errorf("errors: missing %v, good %v", res.Images[0].Err, res.Images[2].Err)
	}
	for _, d := range blobsOf(t, good) {
		if n := up.Count(http.MethodGet, registrytest.KindBlob, d.Digest.String()); n != 1 {
			t.Errorf("GETs of the good image's blob %s = %d, want 1", d.Digest, n)
		}
	}
}

func TestRunRejectsBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:30123", "ftp://127.0.0.1", "http://", "http://127.0.0.1:30123/?x=1"} {
		if _, err := Run(t.Context(), Config{Target: target}, nil); err == nil {
			t.Errorf("Run with target %q: no error", target)
		}
	}
}

// TestRunHintsAtCredentials: a refusal gets the hint an operator can act
// on, and the warm, which talks to cacheyd alone, never asks the realm a
// challenge names.
func TestRunHintsAtCredentials(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true})
	up.SeedImage(t, "team/private", "v1", 1, 10)
	up.Reset()
	res, err := Run(t.Context(), Config{Target: up.URL()}, []Image{image(t, up, "team/private:v1")})
	var se *puller.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("Run: %v, want a 401", err)
	}
	want := "HEAD manifest v1: 401 Unauthorized (cacheyd may not pull team/private anonymously: give it credentials for " + up.Host() + " with --credentials-file"
	if !strings.HasPrefix(res.Images[0].Err.Error(), want) {
		t.Errorf("error %q, want it to start %q", res.Images[0].Err, want)
	}
	if n := up.Count("", registrytest.KindToken, ""); n != 0 {
		t.Errorf("token requests = %d, want 0", n)
	}
}

// TestRunCountsItsManifestGETs: warming straight from a registry, the
// manifest GETs the warm counts are the registry's own count of pulls, and
// a dry run costs none and, with no cacheyd to hold anything, counts every
// manifest it can see without a GET: the index alone.
func TestRunCountsItsManifestGETs(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{PullLimit: 50})
	up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 1, 2<<10)
	up.SeedImage(t, "team/tool", "2.0", 1, 2<<10)
	up.Reset()
	images := []Image{image(t, up, "team/app:v1"), image(t, up, "team/tool:2.0"), image(t, up, "team/app:v1")}

	est, err := DryRun(t.Context(), Config{Target: up.URL()}, images)
	if err != nil {
		t.Fatal(err)
	}
	if counted, _ := up.Pulls(); counted != 0 {
		t.Errorf("the dry run cost %d counted pulls, want 0", counted)
	}
	got := Estimate{Manifests: est.Manifests, Indexes: est.Indexes, Pulls: est.Pulls}
	if diff := cmp.Diff(Estimate{Manifests: 2, Indexes: 1, Pulls: -1}, got); diff != "" {
		t.Errorf("Estimate (-want +got):\n%s", diff)
	}
	for i, want := range []int{1, 1, 1} {
		if ie := est.Images[i]; ie.Manifests != want || ie.Err != nil {
			t.Errorf("image %d: %d manifests, err %v; want %d", i, ie.Manifests, ie.Err, want)
		}
	}

	res, err := Run(t.Context(), Config{Target: up.URL()}, images)
	if err != nil {
		t.Fatal(err)
	}
	// The index and two platform manifests once for each naming of app,
	// and the tool's manifest.
	counted, _ := up.Pulls()
	if res.ManifestGETs != counted || counted != 7 || res.Pulls != -1 {
		t.Errorf("manifest GETs %d, registry counted %d, Pulls %d; want 7, 7, -1", res.ManifestGETs, counted, res.Pulls)
	}
}
