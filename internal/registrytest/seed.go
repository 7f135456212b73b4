package registrytest

import (
	"archive/tar"
	"bytes"
	crand "crypto/rand"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Seeding writes through a separate server that reaches storage directly, so
// it needs no credentials and is never recorded or hooked.

// SeedImage stores a random OCI image under repo and tag and returns it. An
// empty tag (or one starting with "sha256:") stores the image by its digest
// only. Each of the layers is an uncompressed tar holding one file of
// layerSize random bytes, so each blob is less than 2 KiB over layerSize;
// without compression big layers are cheap to make and digest equals diff
// ID. The config says linux/amd64. Images with other media types (Docker,
// gzip) can be built with go-containerregistry and stored with WriteImage.
func (r *Registry) SeedImage(t testing.TB, repo, tag string, layers int, layerSize int64) v1.Image {
	t.Helper()
	img := randomImage(t, "linux/amd64", layers, layerSize)
	r.WriteImage(t, repo, tag, img)
	return img
}

// SeedIndex stores an OCI index under repo with one random image per
// platform ("linux/amd64", "linux/arm64/v8"), each made as SeedImage does,
// with the platform in both the index descriptor and the image config.
func (r *Registry) SeedIndex(t testing.TB, repo, tag string, platforms []string, layers int, layerSize int64) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatalf("registrytest: platform %q: %v", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        randomImage(t, p, layers, layerSize),
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	r.WriteIndex(t, repo, tag, idx)
	return idx
}

// SeedBlob stores content as a blob of repo and returns its digest.
func (r *Registry) SeedBlob(t testing.TB, repo string, content []byte) v1.Hash {
	t.Helper()
	l := static.NewLayer(content, types.OCIUncompressedLayer)
	if err := remote.WriteLayer(r.seedRepo(t, repo), l, r.seedOptions(t)...); err != nil {
		t.Fatalf("registrytest: seed blob into %s: %v", repo, err)
	}
	d, _ := l.Digest()
	return d
}

// WriteImage stores img under repo and tag (see SeedImage for tag).
func (r *Registry) WriteImage(t testing.TB, repo, tag string, img v1.Image) {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("registrytest: digest of image for %s: %v", repo, err)
	}
	if err := remote.Write(r.seedRef(t, repo, tag, d), img, r.seedOptions(t)...); err != nil {
		t.Fatalf("registrytest: seed %s:%s: %v", repo, tag, err)
	}
}

// WriteIndex stores idx and every image it holds under repo and tag (see
// SeedImage for tag).
func (r *Registry) WriteIndex(t testing.TB, repo, tag string, idx v1.ImageIndex) {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("registrytest: digest of index for %s: %v", repo, err)
	}
	if err := remote.WriteIndex(r.seedRef(t, repo, tag, d), idx, r.seedOptions(t)...); err != nil {
		t.Fatalf("registrytest: seed %s:%s: %v", repo, tag, err)
	}
}

func (r *Registry) seedOptions(t testing.TB) []remote.Option {
	return []remote.Option{remote.WithTransport(r.seed.Client().Transport), remote.WithContext(t.Context())}
}

func (r *Registry) seedRepo(t testing.TB, repo string) name.Repository {
	t.Helper()
	rp, err := name.NewRepository(r.seed.Listener.Addr().String()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatalf("registrytest: repository %q: %v", repo, err)
	}
	return rp
}

func (r *Registry) seedRef(t testing.TB, repo, tag string, d v1.Hash) name.Reference {
	t.Helper()
	rp := r.seedRepo(t, repo)
	if tag == "" || strings.HasPrefix(tag, "sha256:") {
		return rp.Digest(d.String())
	}
	return rp.Tag(tag)
}

// randomImage builds an OCI image for platform with layers random layers.
func randomImage(t testing.TB, platform string, layers int, layerSize int64) v1.Image {
	t.Helper()
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatalf("registrytest: platform %q: %v", platform, err)
	}
	ls := make([]v1.Layer, layers)
	for i := range ls {
		ls[i] = randomLayer(t, layerSize)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, ls...)
	if err != nil {
		t.Fatalf("registrytest: append layers: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("registrytest: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = plat.OS, plat.Architecture, plat.Variant, plat.OSVersion
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("registrytest: set platform: %v", err)
	}
	return img
}

// randomLayer is an uncompressed tar holding one file of size random bytes.
func randomLayer(t testing.TB, size int64) v1.Layer {
	t.Helper()
	var seed [32]byte
	crand.Read(seed[:])
	var buf bytes.Buffer
	buf.Grow(int(size) + 3*512)
	tw := tar.NewWriter(&buf)
	err := tw.WriteHeader(&tar.Header{Name: "random", Size: size, Mode: 0o644, Typeflag: tar.TypeReg})
	if err == nil {
		_, err = io.CopyN(tw, rand.NewChaCha8(seed), size)
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("registrytest: random layer: %v", err)
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}
