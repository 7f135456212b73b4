package warm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/oci"
)

// imagePlan is what resolve learned of an image: the blobs to fetch.
type imagePlan struct {
	image Image
	blobs []v1.Descriptor // config and layers of every chosen platform, no duplicates
}

// maxIndexDepth bounds indexes nested in indexes.
const maxIndexDepth = 2

// resolve reads an image's manifests through cacheyd, the way containerd
// does: HEAD the tag, then GET by digest. Its error, if any, goes to ir.Err.
func (w *warmer) resolve(ctx context.Context, ir *ImageResult) imagePlan {
	im := ir.Image
	plan := imagePlan{image: im}
	dg := im.Reference.Digest
	if !im.Reference.IsDigest() {
		var err error
		if dg, err = w.headTag(ctx, im); err != nil {
			ir.Err = err
			return plan
		}
	}
	ir.Digest = dg
	seen := map[v1.Hash]bool{}
	if err := w.walk(ctx, im, dg, 0, ir, &plan, seen); err != nil {
		ir.Err = err
	}
	return plan
}

// headTag resolves a tag to its digest with a HEAD, falling back to a GET
// when the answer names no digest.
func (w *warmer) headTag(ctx context.Context, im Image) (oci.Digest, error) {
	resp, err := w.do(ctx, http.MethodHead, im, "manifests", im.Reference.Tag)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if d, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil {
		return d, nil
	}
	resp, err = w.do(ctx, http.MethodGet, im, "manifests", im.Reference.Tag)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := readManifest(resp.Body)
	if err != nil {
		return "", fmt.Errorf("manifest %s: %w", im.Reference.Tag, err)
	}
	return oci.FromBytes(body), nil
}

// manifestFields is what walk reads of a manifest or an index.
type manifestFields struct {
	MediaType string          `json:"mediaType"`
	Manifests []v1.Descriptor `json:"manifests"`
	Config    *v1.Descriptor  `json:"config"`
	Layers    []v1.Descriptor `json:"layers"`
	FSLayers  json.RawMessage `json:"fsLayers"` // Docker schema 1
}

// walk fetches manifest dg and, for an index, the manifests of the chosen
// platforms, adding their blobs to plan.
func (w *warmer) walk(ctx context.Context, im Image, dg oci.Digest, depth int, ir *ImageResult, plan *imagePlan, seen map[v1.Hash]bool) error {
	body, mediaType, err := w.getManifest(ctx, im, dg)
	if err != nil {
		return err
	}
	var m manifestFields
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", dg.Short(), err)
	}
	if mediaType == "" || mediaType == "application/json" || strings.HasPrefix(mediaType, "text/") {
		mediaType = m.MediaType
	}
	switch {
	case m.FSLayers != nil || strings.HasPrefix(mediaType, "application/vnd.docker.distribution.manifest.v1"):
		return fmt.Errorf("manifest %s: Docker schema 1 is not supported", dg.Short())
	case m.Manifests != nil || strings.Contains(mediaType, "index") || strings.Contains(mediaType, "list"):
		if depth >= maxIndexDepth {
			return fmt.Errorf("index %s: indexes nested deeper than %d", dg.Short(), maxIndexDepth)
		}
		children, err := w.choose(m.Manifests)
		if err != nil {
			return fmt.Errorf("index %s: %w", dg.Short(), err)
		}
		for _, c := range children {
			cd, err := oci.ParseDigest(c.Digest.String())
			if err != nil {
				return fmt.Errorf("index %s: %w", dg.Short(), err)
			}
			if c.Platform != nil && depth == 0 {
				ir.Platforms = append(ir.Platforms, c.Platform.String())
			}
			if err := w.walk(ctx, im, cd, depth+1, ir, plan, seen); err != nil {
				return err
			}
		}
		return nil
	case m.Config == nil:
		return fmt.Errorf("manifest %s: neither an image manifest nor an index (media type %q)", dg.Short(), mediaType)
	}
	for _, d := range append([]v1.Descriptor{*m.Config}, m.Layers...) {
		if foreign(d) || seen[d.Digest] {
			continue
		}
		if _, err := oci.ParseDigest(d.Digest.String()); err != nil || d.Size < 0 {
			return fmt.Errorf("manifest %s: bad descriptor %q: %v", dg.Short(), d.Digest, err)
		}
		seen[d.Digest] = true
		plan.blobs = append(plan.blobs, d)
	}
	return nil
}

// choose picks the manifests of an index to warm: those whose platform
// matches one of w.platforms (all when none are given), never attestations.
func (w *warmer) choose(all []v1.Descriptor) ([]v1.Descriptor, error) {
	var out []v1.Descriptor
	var have []string
	for _, d := range all {
		if attestation(d) {
			continue
		}
		if d.Platform != nil {
			have = append(have, d.Platform.String())
		}
		if len(w.platforms) == 0 {
			out = append(out, d)
			continue
		}
		for _, p := range w.platforms {
			if d.Platform != nil && d.Platform.Satisfies(p) {
				out = append(out, d)
				break
			}
		}
	}
	if len(out) == 0 {
		want := make([]string, len(w.platforms))
		for i, p := range w.platforms {
			want[i] = p.String()
		}
		return nil, fmt.Errorf("no manifest for %s (it has %s)", strings.Join(want, ", "), strings.Join(have, ", "))
	}
	return out, nil
}

// attestation reports whether d is a build attestation (provenance, SBOM)
// rather than an image: BuildKit marks them so and gives them the platform
// unknown/unknown.
func attestation(d v1.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// foreign reports whether a layer is one that nodes fetch from elsewhere
// (Windows base layers with URLs): registries, and so cacheyd, do not hold
// them.
func foreign(d v1.Descriptor) bool {
	return len(d.URLs) > 0 || strings.Contains(string(d.MediaType), "foreign") || strings.Contains(string(d.MediaType), "nondistributable")
}

// getManifest GETs manifest dg and checks its digest.
func (w *warmer) getManifest(ctx context.Context, im Image, dg oci.Digest) ([]byte, string, error) {
	resp, err := w.do(ctx, http.MethodGet, im, "manifests", string(dg))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := readManifest(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s: %w", dg.Short(), err)
	}
	h := dg.NewHash()
	h.Write(body)
	if !dg.Matches(h) {
		return nil, "", fmt.Errorf("manifest %s: %w", dg.Short(), errDigestMismatch)
	}
	w.received(true, int64(len(body)))
	return body, resp.Header.Get("Content-Type"), nil
}

var errDigestMismatch = errors.New("content does not match its digest")

// readManifest reads a manifest body of at most oci.MaxManifestSize.
func readManifest(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, oci.MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if n > oci.MaxManifestSize {
		return nil, fmt.Errorf("larger than %d bytes", oci.MaxManifestSize)
	}
	return buf.Bytes(), nil
}
