package s3_test

import (
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/internal/s3test"
)

// TestConformance: the tier answers what it holds as every origin does
// (windows, 416, HEAD, manifests by digest, 404, cut and hanging bodies),
// over one versitygw.
func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	origintest.Conformance(t, origintest.Suite{DigestOnly: true, New: func(t *testing.T, hold origintest.Holding) origintest.Fetcher {
		h := newHarness(t, srv, nil)
		for _, b := range hold.Blobs {
			if r := h.upload(t, h.files.add(b, "")); r != "stored" {
				t.Fatalf("upload of a blob: %s", r)
			}
		}
		if r := h.upload(t, h.files.add(hold.Manifest, hold.MediaType)); r != "stored" {
			t.Fatalf("upload of the manifest: %s", r)
		}
		switch hold.Behaviour {
		case origintest.Cuts:
			return origintest.Cut(h.store, hold.After)
		case origintest.Hangs:
			return origintest.Hang(h.store, hold.After)
		}
		return h.store
	}})
}
