package puller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cacheyd/cacheyd/oci"
)

// Manifest is an image manifest or an index, fetched by digest and
// verified. Exactly one of Image and Index is set.
type Manifest struct {
	Digest oci.Digest
	// MediaType is the answer's Content-Type when it names a manifest
	// type, else the body's mediaType field (OCI makes it optional).
	MediaType types.MediaType
	// Raw is the manifest as received; its length is the manifest's size.
	Raw   []byte
	Image *v1.Manifest
	Index *v1.IndexManifest
}

// Resolve finds the digest tag points to the way containerd does, with a
// HEAD (which Docker Hub does not count as a pull). An answer that names
// no digest in Docker-Content-Digest is asked again with a GET, and the
// digest is that of the body.
func (p *Puller) Resolve(ctx context.Context, repo, tag string) (oci.Digest, error) {
	resp, err := p.do(ctx, http.MethodHead, repo, KindManifest, tag, "")
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if d, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil {
		return d, nil
	}
	resp, err = p.do(ctx, http.MethodGet, repo, KindManifest, tag, "")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := readManifest(resp.Body)
	if err != nil {
		return "", fmt.Errorf("manifest %s: %w", tag, err)
	}
	return oci.FromBytes(raw), nil
}

// Manifest GETs manifest d of repo whole, checks its digest and parses it.
func (p *Puller) Manifest(ctx context.Context, repo string, d oci.Digest) (*Manifest, error) {
	f := Fetch{Kind: KindManifest, Digest: d, Start: time.Now()}
	raw, contentType, err := p.readManifest(ctx, repo, &f)
	p.observe(&f, err)
	if err != nil {
		return nil, err
	}
	return parseManifest(d, contentType, raw)
}

func (p *Puller) readManifest(ctx context.Context, repo string, f *Fetch) ([]byte, string, error) {
	resp, err := p.do(ctx, http.MethodGet, repo, KindManifest, string(f.Digest), "")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	raw, err := readManifest(&observedReader{r: resp.Body, p: p, f: f})
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s: %w", f.Digest.Short(), err)
	}
	h := f.Digest.NewHash()
	h.Write(raw)
	if !f.Digest.Matches(h) {
		return nil, "", fmt.Errorf("manifest %s: %w", f.Digest.Short(), ErrDigestMismatch)
	}
	return raw, resp.Header.Get("Content-Type"), nil
}

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

// parseManifest reads raw, manifest d as answered with contentType. The
// media type decides what it is; when neither the answer nor the body
// names a manifest type, the fields do: an index lists manifests, an image
// manifest has a config.
func parseManifest(d oci.Digest, contentType string, raw []byte) (*Manifest, error) {
	// An index's mediaType and schemaVersion sit where an image
	// manifest's do, so one decoding tells which it is.
	var im v1.Manifest
	if err := json.Unmarshal(raw, &im); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Short(), err)
	}
	mt, _, _ := strings.Cut(contentType, ";")
	m := &Manifest{Digest: d, MediaType: types.MediaType(strings.TrimSpace(mt)), Raw: raw}
	if !m.MediaType.IsImage() && !m.MediaType.IsIndex() && !m.MediaType.IsSchema1() {
		m.MediaType = im.MediaType
	}
	switch {
	case m.MediaType.IsSchema1() || im.SchemaVersion == 1:
		return nil, fmt.Errorf("manifest %s: Docker schema 1 is not supported", d.Short())
	case m.MediaType.IsImage():
		m.Image = &im
		return m, nil
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("index %s: %w", d.Short(), err)
	}
	switch {
	case m.MediaType.IsIndex() || len(idx.Manifests) > 0:
		m.Index = &idx
	case im.Config.Digest != (v1.Hash{}):
		m.Image = &im
	default:
		return nil, fmt.Errorf("manifest %s: neither an image manifest nor an index (media type %q)", d.Short(), m.MediaType)
	}
	return m, nil
}
