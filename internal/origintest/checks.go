package origintest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// The checks of Conformance, one origin each.

// readLimit bounds how long a check waits for a body that must end: a
// bound for a failure to be reported, not a measure of speed.
const readLimit = time.Minute

// checkWindows: every window a Range can ask for is answered with its
// bytes, where they start (Offset) and end (End), the object's Size and,
// if any, its digest.
func checkWindows(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Honest)
	data := h.Blobs[1]
	size := int64(len(data))
	tests := []struct {
		name                   string
		offset, length, suffix int64
		start, end             int64
	}{
		{"whole", 0, 0, 0, 0, size},
		{"from an offset", 1000, 0, 0, 1000, size},
		{"a window", 1000, 5000, 0, 1000, 6000},
		{"a window at the start", 0, 10, 0, 0, 10},
		{"a window past the end", size - 10, 100, 0, size - 10, size},
		{"the last byte", size - 1, 0, 0, size - 1, size},
		{"a suffix", 0, 0, 777, size - 777, size},
		{"a suffix longer than the object", 0, 0, size + 5, 0, size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := blobReq(h, http.MethodGet, data)
			req.Offset, req.Length, req.Suffix = tt.offset, tt.length, tt.suffix
			resp, err := o.Fetch(t.Context(), req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			got, err := readBody(resp)
			if err != nil {
				t.Fatalf("body: %v after %d bytes", err, len(got))
			}
			end := resp.End
			if end == 0 {
				end = resp.Size // not said: to the end
			}
			if resp.Offset != tt.start || end != tt.end || resp.Size != size {
				t.Errorf("Offset, End, Size = %d, %d (%d said), %d; want %d, %d, %d", resp.Offset, end, resp.End, resp.Size, tt.start, tt.end, size)
			}
			if !bytes.Equal(got, data[tt.start:tt.end]) {
				t.Errorf("body: %d bytes, want bytes %d-%d (%d)", len(got), tt.start, tt.end-1, tt.end-tt.start)
			}
			// A digest is not required: a blob's bytes often come from a
			// CDN, which sends none (the request's digest is what counts).
			if want := oci.FromBytes(data); resp.Digest != "" && resp.Digest != want {
				t.Errorf("Digest = %q, want %s or none", resp.Digest, want)
			}
		})
	}
}

// checkPastTheEnd: a window that starts at or past the end of the object
// is 416.
func checkPastTheEnd(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Honest)
	data := h.Blobs[0]
	for _, tt := range []struct {
		name           string
		offset, length int64
	}{
		{"at the end", int64(len(data)), 0},
		{"past the end", int64(len(data)) + 10, 0},
		{"a window past the end", int64(len(data)) + 10, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := blobReq(h, http.MethodGet, data)
			req.Offset, req.Length = tt.offset, tt.length
			resp, err := o.Fetch(t.Context(), req)
			if err == nil {
				got, _ := readBody(resp)
				t.Fatalf("answered %d bytes from %d, want 416", len(got), resp.Offset)
			}
			if !isStatus(err, http.StatusRequestedRangeNotSatisfiable) {
				t.Errorf("err = %v, want a 416 *oci.Error", err)
			}
		})
	}
}

// checkHead: a HEAD answers the size, digest and media type without a body.
func checkHead(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Honest)
	for _, tt := range []struct {
		name      string
		req       *oci.Request
		data      []byte
		mediaType string
	}{
		{"blob", blobReq(h, http.MethodHead, h.Blobs[1]), h.Blobs[1], ""},
		{"manifest by tag", manifestReq(h, http.MethodHead, oci.Reference{Tag: h.Tag}), h.Manifest, h.MediaType},
		{"manifest by digest", manifestReq(h, http.MethodHead, oci.Reference{Digest: oci.FromBytes(h.Manifest)}), h.Manifest, h.MediaType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			skipTag(t, s, tt.req.Reference)
			resp, err := o.Fetch(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if resp.Body != nil {
				resp.Body.Close()
				t.Error("a HEAD answered with a body")
			}
			if want := oci.FromBytes(tt.data); resp.Digest != want || resp.Size != int64(len(tt.data)) {
				t.Errorf("Digest, Size = %q, %d; want %s, %d", resp.Digest, resp.Size, want, len(tt.data))
			}
			if tt.mediaType != "" && resp.MediaType != tt.mediaType {
				t.Errorf("MediaType = %q, want %q", resp.MediaType, tt.mediaType)
			}
		})
	}
}

// checkManifests: a manifest is the same by tag and by digest, with its
// digest and media type.
func checkManifests(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Honest)
	dg := oci.FromBytes(h.Manifest)
	for _, ref := range []oci.Reference{{Tag: h.Tag}, {Digest: dg}} {
		t.Run(ref.String(), func(t *testing.T) {
			skipTag(t, s, ref)
			resp, err := o.Fetch(t.Context(), manifestReq(h, http.MethodGet, ref))
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			got, err := readBody(resp)
			if err != nil || !bytes.Equal(got, h.Manifest) {
				t.Errorf("body: %q, %v; want the manifest", got, err)
			}
			if resp.Digest != dg || resp.MediaType != h.MediaType || resp.Size != int64(len(h.Manifest)) {
				t.Errorf("Digest, MediaType, Size = %q, %q, %d; want %s, %q, %d", resp.Digest, resp.MediaType, resp.Size, dg, h.MediaType, len(h.Manifest))
			}
		})
	}
}

// checkUnknown: what the origin does not hold is 404.
func checkUnknown(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Honest)
	for _, tt := range []struct {
		name string
		req  *oci.Request
	}{
		{"blob", blobReq(h, http.MethodGet, h.Absent)},
		{"blob HEAD", blobReq(h, http.MethodHead, h.Absent)},
		{"tag", manifestReq(h, http.MethodGet, oci.Reference{Tag: h.AbsentTag})},
		{"tag HEAD", manifestReq(h, http.MethodHead, oci.Reference{Tag: h.AbsentTag})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			skipTag(t, s, tt.req.Reference)
			resp, err := o.Fetch(t.Context(), tt.req)
			if err == nil {
				readBody(resp)
				t.Fatal("answered, want 404")
			}
			if !isStatus(err, http.StatusNotFound) {
				t.Errorf("err = %v, want a 404 *oci.Error", err)
			}
		})
	}
}

// checkRefusal: a registry's refusal comes back as an *oci.Error with its
// status and challenge, for the client to authenticate against.
func checkRefusal(t *testing.T, s Suite) {
	if s.DigestOnly {
		t.Skip("an origin of content by digest only is no registry that refuses")
	}
	o, h := newOrigin(t, s, Refuses)
	for _, req := range []*oci.Request{
		blobReq(h, http.MethodGet, h.Blobs[1]),
		manifestReq(h, http.MethodHead, oci.Reference{Tag: h.Tag}),
		manifestReq(h, http.MethodGet, oci.Reference{Tag: h.Tag}),
	} {
		t.Run(req.Method+" "+req.Kind.String(), func(t *testing.T) {
			resp, err := o.Fetch(t.Context(), req)
			if err == nil {
				readBody(resp)
				t.Fatal("answered, want 401")
			}
			e, ok := oci.AsError(err)
			if !ok || e.Status != http.StatusUnauthorized {
				t.Fatalf("err = %v, want a 401 *oci.Error", err)
			}
			if scheme, _, _ := strings.Cut(e.Challenge, " "); !strings.EqualFold(scheme, "Bearer") {
				t.Errorf("Challenge = %q, want a Bearer challenge", e.Challenge)
			}
		})
	}
}

// checkCutBody: a body cut short is an error, never a short success, and
// the bytes before the cut are right.
func checkCutBody(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Cuts)
	data := h.Blobs[1]
	resp, err := o.Fetch(t.Context(), blobReq(h, http.MethodGet, data))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	got, err := readBody(resp)
	if err == nil {
		t.Fatalf("a body cut after %d bytes read as a success of %d of %d bytes", h.After, len(got), len(data))
	}
	if len(got) >= len(data) || !bytes.Equal(got, data[:len(got)]) {
		t.Errorf("before the cut (%v): %d bytes, want a prefix of the %d", err, len(got), len(data))
	}
}

// checkTimeout: a body that hangs ends, with an error, when the request's
// context does.
func checkTimeout(t *testing.T, s Suite) {
	o, h := newOrigin(t, s, Hangs)
	data := h.Blobs[1]
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp, err := o.Fetch(ctx, blobReq(h, http.MethodGet, data))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	type result struct {
		got []byte
		err error
	}
	done := make(chan result, 1)
	// Stops when the body ends, which the cancel below must make it do.
	go func() {
		got, err := readBody(resp)
		done <- result{got, err}
	}()
	cancel()
	limit := time.NewTimer(readLimit)
	defer limit.Stop()
	select {
	case r := <-done:
		if r.err == nil {
			t.Errorf("a hanging body read as a success of %d of %d bytes", len(r.got), len(data))
		}
		if len(r.got) >= len(data) || !bytes.Equal(r.got, data[:len(r.got)]) {
			t.Errorf("before the hang (%v): %d bytes, want a prefix of the %d", r.err, len(r.got), len(data))
		}
	case <-limit.C:
		t.Fatalf("a hanging body still read %v after its request's context was cancelled", readLimit)
	}
}

// readBody reads resp's body to its end and closes it.
func readBody(resp *oci.Response) ([]byte, error) {
	if resp.Body == nil {
		return nil, nil
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
