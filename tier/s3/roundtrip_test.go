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

func TestRoundTrip(t *testing.T) {
	h := newHarness(t, s3test.Start(t), nil)
	data := randomBytes(t, 300<<10+7)
	e := h.files.add(data, "")
	if r := h.upload(t, e); r != "stored" {
		t.Fatalf("upload: %s, want stored", r)
	}
	size := int64(len(data))
	for _, tt := range []struct {
		name                   string
		offset, length, suffix int64
		start, end             int64
	}{
		{"whole", 0, 0, 0, 0, size},
		{"from an offset", 1000, 0, 0, 1000, size},
		{"a window", 1000, 5000, 0, 1000, 6000},
		{"a window past the end", size - 10, 100, 0, size - 10, size},
		{"a suffix", 0, 0, 777, size - 777, size},
		{"a suffix longer than the object", 0, 0, size + 5, 0, size},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := blobReq(http.MethodGet, e.Digest)
			req.Offset, req.Length, req.Suffix = tt.offset, tt.length, tt.suffix
			resp, err := h.store.Fetch(t.Context(), req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.Offset != tt.start || resp.End != tt.end || resp.Size != size || resp.Digest != e.Digest {
				t.Errorf("Offset, End, Size, Digest = %d, %d, %d, %s; want %d, %d, %d, %s",
					resp.Offset, resp.End, resp.Size, resp.Digest, tt.start, tt.end, size, e.Digest)
			}
			if !bytes.Equal(got, data[tt.start:tt.end]) {
				t.Errorf("body: %d bytes, want bytes %d-%d", len(got), tt.start, tt.end-1)
			}
		})
	}
	t.Run("past the end", func(t *testing.T) {
		req := blobReq(http.MethodGet, e.Digest)
		req.Offset = size + 10
		_, err := h.store.Fetch(t.Context(), req)
		if e, ok := oci.AsError(err); !ok || e.Status != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("err = %v, want a 416 *oci.Error", err)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, err := h.store.Fetch(t.Context(), blobReq(http.MethodHead, e.Digest))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if resp.Body != nil || resp.Size != size || resp.Digest != e.Digest {
			t.Errorf("Body, Size, Digest = %v, %d, %s; want none, %d, %s", resp.Body, resp.Size, resp.Digest, size, e.Digest)
		}
	})
	if got := counted(h.m.S3.ReadBytes); got < float64(size) {
		t.Errorf("read bytes counted: %v, want at least %d", got, size)
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
