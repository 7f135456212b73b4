package registrytest

import (
	"bytes"
	"net/http"
	"testing"
)

// PutBlob stores content without HTTP; a pushed image whose layers are there
// uploads only its config and manifest, and the blob is served with Range.
func TestPutBlob(t *testing.T) {
	reg := New(t, Options{})
	content, err := RandomTar(10_000)
	if err != nil {
		t.Fatal(err)
	}
	h, err := reg.PutBlob(content)
	if err != nil {
		t.Fatal(err)
	}
	resp, got, err := blobBody(t, reg, h.String(), nil)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, content) {
		t.Errorf("GET %s: %d, %d bytes, %v", h, resp.StatusCode, len(got), err)
	}
	if resp := get(t, reg, "/v2/b/c/blobs/"+h.String(), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET from another repository: %d", resp.StatusCode)
	}
	resp, got, err = blobBody(t, reg, h.String(), http.Header{"Range": {"bytes=9000-"}})
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[9000:]) {
		t.Errorf("Range: %d, %d bytes, %v", resp.StatusCode, len(got), err)
	}
	if n := reg.Count("", "", ""); n != 3 {
		t.Errorf("recorded %d requests, want 3 (PutBlob is not a request)", n)
	}
}
