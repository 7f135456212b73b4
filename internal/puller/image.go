package puller

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/oci"
)

// Image is what the manifests of an image say a pull of it fetches.
type Image struct {
	// Digest is what the reference resolved to: the index's digest, or
	// the image manifest's.
	Digest oci.Digest
	// Manifests are the manifests read, verified, in the order read: the
	// one Digest names, then each chosen platform's.
	Manifests []*Manifest
	// Platforms are the platforms chosen from the index; empty for an
	// image manifest.
	Platforms []v1.Platform
	// Blobs are the configs and layers of the chosen manifests, in order,
	// each digest once; foreign layers, which registries do not hold, are
	// left out.
	Blobs []v1.Descriptor
}

// maxIndexDepth bounds indexes nested in indexes.
const maxIndexDepth = 2

// Image reads the manifests of repo at ref (a tag or a digest) the way
// containerd does: a tag is resolved with Resolve, then every manifest is
// fetched by digest; from an index, the manifests of p.Platforms. On
// error, the Image holds what was read before it.
func (p *Puller) Image(ctx context.Context, repo, ref string) (*Image, error) {
	r, err := oci.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img := &Image{Digest: r.Digest}
	if !r.IsDigest() {
		if img.Digest, err = p.Resolve(ctx, repo, r.Tag); err != nil {
			return img, err
		}
	}
	return img, p.walk(ctx, repo, img.Digest, 0, img, map[v1.Hash]bool{})
}

// walk fetches manifest d and, for an index, the manifests of the chosen
// platforms, adding to img what it read and the blobs not in seen.
func (p *Puller) walk(ctx context.Context, repo string, d oci.Digest, depth int, img *Image, seen map[v1.Hash]bool) error {
	m, err := p.Manifest(ctx, repo, d)
	if err != nil {
		return err
	}
	img.Manifests = append(img.Manifests, m)
	if m.Index != nil {
		if depth >= maxIndexDepth {
			return fmt.Errorf("index %s: indexes nested deeper than %d", d.Short(), maxIndexDepth)
		}
		children, err := choose(m.Index.Manifests, p.Platforms)
		if err != nil {
			return fmt.Errorf("index %s: %w", d.Short(), err)
		}
		for _, c := range children {
			cd, err := oci.ParseDigest(c.Digest.String())
			if err != nil {
				return fmt.Errorf("index %s: %w", d.Short(), err)
			}
			if c.Platform != nil && depth == 0 {
				img.Platforms = append(img.Platforms, *c.Platform)
			}
			if err := p.walk(ctx, repo, cd, depth+1, img, seen); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range append([]v1.Descriptor{m.Image.Config}, m.Image.Layers...) {
		if foreign(b) || seen[b.Digest] {
			continue
		}
		if _, err := oci.ParseDigest(b.Digest.String()); err != nil {
			return fmt.Errorf("manifest %s: %w", d.Short(), err)
		}
		if b.Size < 0 {
			return fmt.Errorf("manifest %s: blob %s of size %d", d.Short(), b.Digest, b.Size)
		}
		seen[b.Digest] = true
		img.Blobs = append(img.Blobs, b)
	}
	return nil
}
