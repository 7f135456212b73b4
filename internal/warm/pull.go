package warm

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/puller"
)

// imagePlan is what resolve learned of an image: the blobs to fetch.
type imagePlan struct {
	image Image
	blobs []v1.Descriptor // config and layers of every chosen platform, no duplicates
}

// puller asks cacheyd for im's registry. It answers no token challenge:
// the warm talks to cacheyd alone, and a refusal is reported with a hint.
func (w *warmer) puller(im Image) *puller.Puller {
	p := &puller.Puller{Client: w.client, Base: w.base, Namespace: im.Registry, Platforms: w.platforms}
	// Every manifest GET by digest, answered or not: what a registry
	// target counts as pulls.
	p.Observe = func(f puller.Fetch) {
		if f.Kind == puller.KindManifest {
			w.manifestGETs.Add(1)
		}
	}
	if w.onBytes != nil {
		// The progress bar counts blob bytes: manifests are read before
		// its total is known.
		p.Progress = func(k puller.Kind, n int64) {
			if k == puller.KindBlob {
				w.onBytes(n)
			}
		}
	}
	return p
}

// resolve reads an image's manifests through cacheyd. Its error, if any,
// goes to ir.Err.
func (w *warmer) resolve(ctx context.Context, ir *ImageResult) imagePlan {
	im := ir.Image
	plan := imagePlan{image: im}
	img, err := w.puller(im).Image(ctx, im.Repository, im.Reference.String())
	if img != nil {
		ir.Digest = img.Digest
		for _, p := range img.Platforms {
			ir.Platforms = append(ir.Platforms, p.String())
		}
		for _, m := range img.Manifests {
			w.received(true, int64(len(m.Raw)))
		}
	}
	if err != nil {
		ir.Err = hint(err, im)
		return plan
	}
	plan.blobs = img.Blobs
	return plan
}

// blob GETs one blob through cacheyd, reads it to the end and checks its
// size and digest.
func (w *warmer) blob(ctx context.Context, im Image, d v1.Descriptor) error {
	n, err := w.puller(im).Blob(ctx, im.Repository, d)
	if err != nil {
		return hint(err, im)
	}
	w.received(false, n)
	return nil
}

// hint adds to a refusal from cacheyd what an operator can do about it.
func hint(err error, im Image) error {
	var se *puller.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w (cacheyd may not pull %s anonymously: give it credentials for %s with --credentials-file; content pulled with a client's own credentials is never cached)", err, im.Repository, im.Registry)
	case http.StatusNotFound:
		return fmt.Errorf("%w (is %s right, and does cacheyd allow registry %s?)", err, im.String(), im.Registry)
	}
	return err
}
