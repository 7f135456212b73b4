package registrytest

import (
	"archive/tar"
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
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

// SeedIndexWithAttestation is SeedIndex with one more manifest in the
// index, an attestation as BuildKit adds them (platform unknown/unknown,
// annotated "attestation-manifest"), which nodes never pull; it returns the
// index and the attestation's digest.
func (r *Registry) SeedIndexWithAttestation(t testing.TB, repo, tag string, platforms []string, layers int, layerSize int64) (v1.ImageIndex, v1.Hash) {
	t.Helper()
	idx := r.SeedIndex(t, repo, "", platforms, layers, layerSize)
	att := randomImage(t, "unknown/unknown", 1, 100)
	d, err := att.Digest()
	if err != nil {
		t.Fatal(err)
	}
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
	}})
	r.WriteIndex(t, repo, tag, idx)
	return idx, d
}

// SeedBlob stores content as a blob of repo and returns its digest.
func (r *Registry) SeedBlob(t testing.TB, repo string, content []byte) v1.Hash {
	t.Helper()
	l := static.NewLayer(content, types.OCIUncompressedLayer)
	rp, err := r.seedRepo(repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(rp, l, r.seedOptions(t.Context())...); err != nil {
		t.Fatalf("registrytest: seed blob into %s: %v", repo, err)
	}
	d, _ := l.Digest()
	return d
}

// SeedManifest stores manifest, as it is, under repo and tag with
// mediaType as its Content-Type: a manifest no image type builds.
func (r *Registry) SeedManifest(t testing.TB, repo, tag string, manifest []byte, mediaType string) {
	t.Helper()
	rp, err := r.seedRepo(repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(rp.Tag(tag), rawManifest{manifest, types.MediaType(mediaType)}, r.seedOptions(t.Context())...); err != nil {
		t.Fatalf("registrytest: seed manifest %s:%s: %v", repo, tag, err)
	}
}

// rawManifest is a manifest's bytes and type, as remote.Put takes them.
type rawManifest struct {
	body      []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// WriteImage stores img under repo and tag (see SeedImage for tag).
func (r *Registry) WriteImage(t testing.TB, repo, tag string, img v1.Image) {
	t.Helper()
	if err := r.PutImage(t.Context(), repo, tag, img); err != nil {
		t.Fatal(err)
	}
}

// WriteIndex stores idx and every image it holds under repo and tag (see
// SeedImage for tag).
func (r *Registry) WriteIndex(t testing.TB, repo, tag string, idx v1.ImageIndex) {
	t.Helper()
	if err := r.PutIndex(t.Context(), repo, tag, idx); err != nil {
		t.Fatal(err)
	}
}

// PutImage is WriteImage for use outside tests: it stores img under repo
// and tag (see SeedImage for tag).
func (r *Registry) PutImage(ctx context.Context, repo, tag string, img v1.Image) error {
	d, err := img.Digest()
	if err != nil {
		return fmt.Errorf("registrytest: digest of image for %s: %w", repo, err)
	}
	ref, err := r.seedRef(repo, tag, d)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, r.seedOptions(ctx)...); err != nil {
		return fmt.Errorf("registrytest: seed %s:%s: %w", repo, tag, err)
	}
	return nil
}

// PutIndex is WriteIndex for use outside tests: it stores idx and every
// image it holds under repo and tag (see SeedImage for tag).
func (r *Registry) PutIndex(ctx context.Context, repo, tag string, idx v1.ImageIndex) error {
	d, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("registrytest: digest of index for %s: %w", repo, err)
	}
	ref, err := r.seedRef(repo, tag, d)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(ref, idx, r.seedOptions(ctx)...); err != nil {
		return fmt.Errorf("registrytest: seed %s:%s: %w", repo, tag, err)
	}
	return nil
}

func (r *Registry) seedOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithTransport(r.seed.Client().Transport), remote.WithContext(ctx)}
}

func (r *Registry) seedRepo(repo string) (name.Repository, error) {
	rp, err := name.NewRepository(r.seed.Listener.Addr().String()+"/"+repo, name.Insecure)
	if err != nil {
		return name.Repository{}, fmt.Errorf("registrytest: repository %q: %w", repo, err)
	}
	return rp, nil
}

func (r *Registry) seedRef(repo, tag string, d v1.Hash) (name.Reference, error) {
	rp, err := r.seedRepo(repo)
	if err != nil {
		return nil, err
	}
	if tag == "" || strings.HasPrefix(tag, "sha256:") {
		return rp.Digest(d.String()), nil
	}
	return rp.Tag(tag), nil
}

// randomImage builds an OCI image for platform with layers random layers.
func randomImage(t testing.TB, platform string, layers int, layerSize int64) v1.Image {
	t.Helper()
	img, err := randomImageFor(platform, layers, layerSize)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomImageFor(platform string, layers int, layerSize int64) (v1.Image, error) {
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("registrytest: platform %q: %w", platform, err)
	}
	ls := make([]v1.Layer, layers)
	for i := range ls {
		if ls[i], err = RandomLayer(layerSize); err != nil {
			return nil, err
		}
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, ls...)
	if err != nil {
		return nil, fmt.Errorf("registrytest: append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("registrytest: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = plat.OS, plat.Architecture, plat.Variant, plat.OSVersion
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("registrytest: set platform: %w", err)
	}
	return img, nil
}

// randomLayer is RandomLayer for tests.
func randomLayer(t testing.TB, size int64) v1.Layer {
	t.Helper()
	l, err := RandomLayer(size)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// RandomLayer returns an uncompressed OCI layer: a tar holding one file of
// size random bytes, so the blob is less than 2 KiB over size and its digest
// equals its diff ID. Every call makes different content.
func RandomLayer(size int64) (v1.Layer, error) {
	b, err := RandomTar(size)
	if err != nil {
		return nil, err
	}
	return static.NewLayer(b, types.OCIUncompressedLayer), nil
}

// RandomTar returns the content of a RandomLayer: a tar holding one file of
// size random bytes.
func RandomTar(size int64) ([]byte, error) {
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
		return nil, fmt.Errorf("registrytest: random layer: %w", err)
	}
	return buf.Bytes(), nil
}
