package bench

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// seeded is one image as stored upstream, with what a node of the
// benchmark's platform must fetch to pull it.
type seeded struct {
	repo, tag string
	// want is every object a node fetches for this image, in pull order:
	// the index (if any), the platform's manifest, the config, the layers.
	want []object
}

// object is one manifest or blob.
type object struct {
	digest   oci.Digest
	size     int64
	manifest bool
	// content is a layer's bytes, which upstream holds too (the same
	// slice): what the lazy nodes' windows must match. Nil for manifests
	// and configs.
	content []byte
}

// descriptor is o as a manifest lists it.
func (o object) descriptor() (v1.Descriptor, error) {
	h, err := v1.NewHash(string(o.digest))
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{Digest: h, Size: o.size}, nil
}

// catalog is the image set as seeded, seen from one platform.
type catalog struct {
	images []seeded
	// objects is every distinct object a node fetches, by digest.
	objects map[oci.Digest]object
	// bytes is the sum of objects' sizes: what one node downloads, and
	// what upstream must send once through a cache.
	bytes int64
	// manifests counts the distinct manifests among objects (indexes
	// included): the pulls Docker Hub would count once through a cache.
	manifests int
	// stored is every byte upstream holds for the set, all platforms.
	stored int64
}

// seedImages builds imgs with random content and stores them upstream,
// with tagSuffix appended to every tag, and the same at every mirror. Every
// call makes new content, so what it seeds is cold for any cache.
func seedImages(ctx context.Context, up *registrytest.Registry, imgs []Image, platform, tagSuffix string, mirrors ...*registrytest.Registry) (*catalog, error) {
	regs := append([]*registrytest.Registry{up}, mirrors...)
	cat := &catalog{objects: map[oci.Digest]object{}}
	shared := map[string]v1.Layer{} // by platform + "/" + Layer.Shared
	contents := map[oci.Digest][]byte{}
	storedBlobs := map[oci.Digest]bool{}
	for _, img := range imgs {
		s := seeded{repo: img.Repository, tag: img.Tag + tagSuffix}
		var (
			index     v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
			single    v1.Image
			found     bool
			platWants []object
		)
		for _, p := range img.Platforms {
			built, err := buildImage(regs, p, img.Layers, shared, contents)
			if err != nil {
				return nil, fmt.Errorf("image %s:%s: %w", img.Repository, img.Tag, err)
			}
			objs, err := objectsOf(built)
			if err != nil {
				return nil, fmt.Errorf("image %s:%s: %w", img.Repository, img.Tag, err)
			}
			for i, o := range objs {
				objs[i].content = contents[o.digest]
				if !o.manifest && !storedBlobs[o.digest] {
					storedBlobs[o.digest] = true
					cat.stored += o.size
				}
			}
			cat.stored += objs[0].size // the manifest
			if p == platform {
				found, platWants = true, objs
			}
			plat, _ := v1.ParsePlatform(p)
			index = mutate.AppendManifests(index, mutate.IndexAddendum{Add: built, Descriptor: v1.Descriptor{Platform: plat}})
			single = built
		}
		if !found {
			return nil, fmt.Errorf("image %s:%s is not built for %s, the nodes' platform", img.Repository, img.Tag, platform)
		}
		if len(img.Platforms) > 1 {
			raw, err := index.RawManifest()
			if err != nil {
				return nil, fmt.Errorf("image %s:%s: index: %w", img.Repository, img.Tag, err)
			}
			for _, reg := range regs {
				if err := reg.PutIndex(ctx, s.repo, s.tag, index); err != nil {
					return nil, err
				}
			}
			s.want = append(s.want, object{digest: oci.FromBytes(raw), size: int64(len(raw)), manifest: true})
			cat.stored += int64(len(raw))
		} else {
			for _, reg := range regs {
				if err := reg.PutImage(ctx, s.repo, s.tag, single); err != nil {
					return nil, err
				}
			}
		}
		s.want = append(s.want, platWants...)
		for _, o := range s.want {
			if _, dup := cat.objects[o.digest]; dup {
				continue
			}
			cat.objects[o.digest] = o
			cat.bytes += o.size
			if o.manifest {
				cat.manifests++
			}
		}
		cat.images = append(cat.images, s)
	}
	return cat, nil
}

// buildImage makes an OCI image for platform with random layers of the
// given sizes, reusing (and filling) shared for named layers. The layers
// are stored at every one of regs at once, without a copy, and noted in
// contents by digest.
func buildImage(regs []*registrytest.Registry, platform string, layers []Layer, shared map[string]v1.Layer, contents map[oci.Digest][]byte) (v1.Image, error) {
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", platform, err)
	}
	ls := make([]v1.Layer, len(layers))
	for i, l := range layers {
		key := platform + "/" + l.Shared
		if l.Shared != "" && shared[key] != nil {
			ls[i] = shared[key]
			continue
		}
		b, err := registrytest.RandomTar(int64(l.Size))
		if err != nil {
			return nil, err
		}
		var h v1.Hash
		for _, reg := range regs {
			if h, err = reg.PutBlob(b); err != nil {
				return nil, err
			}
		}
		contents[oci.Digest(h.String())] = b
		ls[i] = static.NewLayer(b, types.OCIUncompressedLayer)
		if l.Shared != "" {
			shared[key] = ls[i]
		}
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, ls...); err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// objectsOf lists what a node fetches of img: its manifest, its config and
// its layers.
func objectsOf(img v1.Image) ([]object, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	out := []object{
		{digest: oci.FromBytes(raw), size: int64(len(raw)), manifest: true},
		{digest: oci.FromBytes(cfg), size: int64(len(cfg))},
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		out = append(out, object{digest: oci.Digest(d.String()), size: size})
	}
	return out, nil
}
