package s3_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func blobReq(method string, dg oci.Digest) *oci.Request {
	return &oci.Request{Method: method, Kind: oci.KindBlob, Registry: "registry.test", Repository: "app",
		Reference: oci.Reference{Digest: dg}}
}

// TestRoundTrip: what Keep uploads, Fetch reads back, counted as a hit with
// its bytes. The windows, 416 and HEADs are the conformance suite's
// (TestConformance).
func TestRoundTrip(t *testing.T) {
	h := newHarness(t, s3test.Start(t), nil)
	data := randomBytes(t, 300<<10+7)
	e := h.files.add(data, "")
	if r := h.upload(t, e); r != "stored" {
		t.Fatalf("upload: %s, want stored", r)
	}
	resp, err := h.store.Fetch(t.Context(), blobReq(http.MethodGet, e.Digest))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("body: %d bytes, %v; want the %d uploaded", len(got), err, len(data))
	}
	if resp.Offset != 0 || resp.End != e.Size || resp.Size != e.Size || resp.Digest != e.Digest {
		t.Errorf("Offset, End, Size, Digest = %d, %d, %d, %s; want 0, %d, %d, %s",
			resp.Offset, resp.End, resp.Size, resp.Digest, e.Size, e.Size, e.Digest)
	}
	if hits, n := counted(h.m.S3.Reads.WithLabelValues("hit")), counted(h.m.S3.ReadBytes); hits != 1 || n != float64(len(data)) {
		t.Errorf("hits, bytes counted: %v, %v; want 1, %d", hits, n, len(data))
	}
}

// TestKeyLayout: an object is at <prefix>blobs/sha256/<2 hex>/<hex>, with
// the manifest's media type, which a read by digest gives back.
func TestKeyLayout(t *testing.T) {
	srv := s3test.Start(t)
	h := newHarness(t, srv, nil)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"` + ociManifest + `"}`)
	e := h.files.add(manifest, ociManifest)
	if r := h.upload(t, e); r != "stored" {
		t.Fatalf("upload: %s, want stored", r)
	}
	hex := e.Digest.Hex()
	key := "cacheyd/blobs/sha256/" + hex[:2] + "/" + hex
	got, err := os.ReadFile(filepath.Join(srv.Dir, s3test.Bucket, filepath.FromSlash(key)))
	if err != nil || !bytes.Equal(got, manifest) {
		t.Fatalf("the object at %s: %q, %v; want the manifest", key, got, err)
	}
	info, err := srv.Client.StatObject(t.Context(), s3test.Bucket, key, minioStat())
	if err != nil || info.ContentType != ociManifest {
		t.Errorf("the object's Content-Type: %q, %v; want %s", info.ContentType, err, ociManifest)
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req := &oci.Request{Method: method, Kind: oci.KindManifest, Reference: oci.Reference{Digest: e.Digest}}
		resp, err := h.store.Fetch(t.Context(), req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if resp.Body != nil {
			resp.Body.Close()
		}
		if resp.MediaType != ociManifest || resp.Size != e.Size {
			t.Errorf("%s: MediaType, Size = %q, %d; want %q, %d", method, resp.MediaType, resp.Size, ociManifest, e.Size)
		}
	}
}

func TestNotHeld(t *testing.T) {
	h := newHarness(t, s3test.Start(t), nil)
	absent := oci.FromBytes([]byte("absent"))
	for _, tt := range []struct {
		name string
		req  *oci.Request
	}{
		{"blob", blobReq(http.MethodGet, absent)},
		{"blob HEAD", blobReq(http.MethodHead, absent)},
		{"manifest", &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Reference: oci.Reference{Digest: absent}}},
		{"tag", &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Reference: oci.Reference{Tag: "v1"}}},
		{"tag list", &oci.Request{Method: http.MethodGet, Kind: oci.KindTags}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.store.Fetch(t.Context(), tt.req)
			if !errors.Is(err, tier.ErrNotFound) {
				t.Errorf("err = %v, want one wrapping tier.ErrNotFound", err)
			}
			if e, ok := oci.AsError(err); !ok || e.Status != http.StatusNotFound {
				t.Errorf("err = %v, want a 404 *oci.Error", err)
			}
		})
	}
	if got := counted(h.m.S3.Reads.WithLabelValues("miss")); got != 3 {
		t.Errorf("misses counted: %v, want 3 (a tag and a listing are not asked of the bucket)", got)
	}
}
