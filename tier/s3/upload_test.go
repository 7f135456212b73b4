package s3_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// key is dg's object key under the harness's prefix.
func key(dg oci.Digest) string {
	return "cacheyd/blobs/sha256/" + dg.Hex()[:2] + "/" + dg.Hex()
}

// fetchAll reads dg whole from the store.
func fetchAll(t *testing.T, s *s3.Store, dg oci.Digest) ([]byte, error) {
	t.Helper()
	resp, err := s.Fetch(t.Context(), blobReq(http.MethodGet, dg))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// TestAnUploadOnce: a store that stored an object, or read it from the
// bucket, sends nothing when it is kept again; another store (a replica,
// a restart) finds it present after its HEAD, with no second PUT.
func TestAnUploadOnce(t *testing.T) {
	h := newHarness(t, s3test.Start(t), nil)
	e := h.files.add(randomBytes(t, 1000), "")
	if r := h.upload(t, e); r != "stored" {
		t.Fatalf("upload: %s, want stored", r)
	}
	h.store.Keep(e)
	if err := h.store.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.results); n != 0 {
		t.Errorf("kept again, %d uploads ran, want none", n)
	}
	if heads, puts := h.sent.count(http.MethodHead), h.sent.count(http.MethodPut); heads != 1 || puts != 1 {
		t.Errorf("HEADs and PUTs sent: %d, %d; want 1, 1", heads, puts)
	}
	other := reopen(t, h, func(*s3.Config) {})
	h.store = other
	other.Keep(e)
	if r := <-h.results; r != "present" {
		t.Errorf("upload by another store: %s, want present", r)
	}
	if heads, puts := h.sent.count(http.MethodHead), h.sent.count(http.MethodPut); heads != 2 || puts != 1 {
		t.Errorf("HEADs and PUTs sent: %d, %d; want 2, 1", heads, puts)
	}
	// Read from the bucket, it is not uploaded again.
	third := reopen(t, h, func(*s3.Config) {})
	h.store = third
	if _, err := fetchAll(t, third, e.Digest); err != nil {
		t.Fatal(err)
	}
	third.Keep(e)
	if err := third.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.results); n != 0 {
		t.Errorf("kept after a read, %d uploads ran, want none", n)
	}
	if heads, puts := h.sent.count(http.MethodHead), h.sent.count(http.MethodPut); heads != 2 || puts != 1 {
		t.Errorf("HEADs and PUTs sent: %d, %d; want 2, 1", heads, puts)
	}
	if got := counted(h.m.S3.WrittenBytes); got != 1000 {
		t.Errorf("written bytes counted: %v, want 1000", got)
	}
	if got := counted(h.m.S3.Uploads.WithLabelValues("present")); got != 1 {
		t.Errorf("present uploads counted: %v, want 1", got)
	}
}

// hideObjects answers every HEAD 404, as a store would before another
// replica's upload of the same object completes.
type hideObjects struct{ next http.RoundTripper }

func (h hideObjects) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Header: http.Header{},
			Body: http.NoBody, Request: req, ContentLength: 0}, nil
	}
	return h.next.RoundTrip(req)
}

// TestTheConditionalCreate: an upload that finds the object stored after
// its HEAD (by another replica, say) is refused by the store
// (If-None-Match: *) and counted present; the object is left as it was.
func TestTheConditionalCreate(t *testing.T) {
	srv := s3test.Start(t)
	h := newHarness(t, srv, func(c *s3.Config) { c.Transport = hideObjects{http.DefaultTransport} })
	data := randomBytes(t, 1000)
	e := h.files.add(data, "")
	other := bytes.Repeat([]byte("x"), 1000) // not the object: seen if the PUT overwrote it
	if _, err := srv.Client.PutObject(t.Context(), s3test.Bucket, key(e.Digest), bytes.NewReader(other), 1000, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := h.upload(t, e); r != "present" {
		t.Errorf("upload: %s, want present (412 from the conditional create)", r)
	}
	if got, err := fetchAll(t, h.store, e.Digest); err != nil || !bytes.Equal(got, other) {
		t.Errorf("the object: %d bytes, %v; want the one stored first, left alone", len(got), err)
	}
}

// TestRefuteOverwrites: an object that failed verification is not read
// again, and the next upload overwrites it, even at the right size.
func TestRefuteOverwrites(t *testing.T) {
	srv := s3test.Start(t)
	h := newHarness(t, srv, nil)
	data := randomBytes(t, 2000)
	e := h.files.add(data, "")
	wrong := bytes.Repeat([]byte("w"), len(data))
	if _, err := srv.Client.PutObject(t.Context(), s3test.Bucket, key(e.Digest), bytes.NewReader(wrong), int64(len(wrong)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := h.upload(t, e); r != "present" {
		t.Fatalf("upload before Refute: %s, want present (an object of the right size)", r)
	}
	h.store.Refute(e.Digest)
	if _, err := fetchAll(t, h.store, e.Digest); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Fetch of a refuted object: %v, want ErrNotFound", err)
	}
	if r := h.upload(t, e); r != "stored" {
		t.Fatalf("upload after Refute: %s, want stored", r)
	}
	if got, err := fetchAll(t, h.store, e.Digest); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the object after Refute and Keep: %d bytes, %v; want the right %d", len(got), err, len(data))
	}
}

// TestMultipart: an object above the part size goes up in parts, and reads
// back whole.
func TestMultipart(t *testing.T) {
	h := newHarness(t, s3test.Start(t), func(c *s3.Config) { c.PartSize = 5 << 20 })
	data := randomBytes(t, 5<<20+1000)
	e := h.files.add(data, "")
	if r := h.upload(t, e); r != "stored" {
		t.Fatalf("upload: %s, want stored (%v)", r, h.store.Status().LastError)
	}
	if n := h.sent.count(http.MethodPut); n != 2 {
		t.Errorf("PUTs sent: %d, want 2 (a part each)", n)
	}
	if n := h.sent.count(http.MethodPost); n != 2 {
		t.Errorf("POSTs sent: %d, want 2 (start and complete)", n)
	}
	if got, err := fetchAll(t, h.store, e.Digest); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the object: %d bytes, %v; want the %d uploaded", len(got), err, len(data))
	}
}

// failPart fails the upload of a multipart upload's second part.
type failPart struct{ next http.RoundTripper }

func (f failPart) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Get("partNumber") == "2" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("the connection broke")
	}
	return f.next.RoundTrip(req)
}

// TestAFailedMultipartIsAborted: a multipart upload that fails leaves no
// incomplete upload in the bucket.
func TestAFailedMultipartIsAborted(t *testing.T) {
	srv := s3test.Start(t)
	h := newHarness(t, srv, func(c *s3.Config) {
		c.PartSize = 5 << 20
		c.Transport = failPart{http.DefaultTransport}
	})
	e := h.files.add(randomBytes(t, 5<<20+1000), "")
	if r := h.upload(t, e); r != "failed" {
		t.Fatalf("upload: %s, want failed", r)
	}
	if st := h.store.Status(); st.Failed != 1 || !strings.Contains(st.LastError, "broke") {
		t.Errorf("Status: %+v, want 1 failed with its cause", st)
	}
	var left []string
	for u := range srv.Client.ListIncompleteUploads(t.Context(), s3test.Bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		left = append(left, u.Key+" "+u.UploadID)
	}
	if len(left) != 0 {
		t.Errorf("incomplete uploads left: %v", left)
	}
}

// TestAFullQueueDrops: with one upload running and the queue full, each
// further Keep is dropped at once and counted.
func TestAFullQueueDrops(t *testing.T) {
	started, release := make(chan oci.Digest, 10), make(chan struct{})
	h := newHarness(t, s3test.Start(t), func(c *s3.Config) { c.Uploads, c.Queue = 1, 2 })
	read := h.files.read
	h.store = reopen(t, h, func(c *s3.Config) {
		c.Uploads, c.Queue = 1, 2
		c.Read = func(dg oci.Digest) (io.ReadCloser, tier.Entry, error) {
			started <- dg
			<-release
			return read(dg)
		}
	})
	var entries []tier.Entry
	for i := range 6 {
		entries = append(entries, h.files.add([]byte{byte(i), 1, 2, 3}, ""))
	}
	h.store.Keep(entries[0])
	<-started // the worker holds the first: the queue is empty
	for _, e := range entries[1:] {
		h.store.Keep(e)
	}
	if st := h.store.Status(); st.Dropped != 3 || st.Queued != 2 {
		t.Errorf("Status: %d dropped, %d queued; want 3, 2", st.Dropped, st.Queued)
	}
	if got := counted(h.m.S3.Uploads.WithLabelValues("dropped")); got != 3 {
		t.Errorf("dropped uploads counted: %v, want 3", got)
	}
	close(release)
	for range 3 {
		if r := <-h.results; r != "stored" {
			t.Errorf("upload: %s, want stored", r)
		}
	}
	if n := h.sent.count(http.MethodPut); n != 3 {
		t.Errorf("PUTs sent: %d, want 3", n)
	}
}

// reopen closes h's store and opens another like it, changed by mod.
func reopen(t *testing.T, h *harness, mod func(*s3.Config)) *s3.Store {
	t.Helper()
	h.store.Close()
	return newHarness(t, h.srv, func(c *s3.Config) {
		c.Transport, c.Metrics, c.Read = h.sent, h.m, h.files.read
		c.Uploaded = func(e tier.Entry, result string) { h.results <- result }
		mod(c)
	}).store
}

// TestMarkedIsNeverUploaded: content with a private source is never
// uploaded, whether Keep is given it or the file says so when read.
func TestMarkedIsNeverUploaded(t *testing.T) {
	h := newHarness(t, s3test.Start(t), nil)
	e := h.files.add(randomBytes(t, 1000), "")
	private := e
	private.Private = []string{"registry.test/private/app"}
	h.store.Keep(private)
	h.store.Close()
	if n := h.sent.count(http.MethodPut) + h.sent.count(http.MethodHead); n != 0 {
		t.Errorf("requests sent for private content: %d, want 0", n)
	}
	if st := h.store.Status(); st.Stored+st.Present+st.Failed+st.Dropped != 0 {
		t.Errorf("Status: %+v, want no upload", st)
	}

	h.store = reopen(t, h, func(c *s3.Config) {
		c.Read = func(dg oci.Digest) (io.ReadCloser, tier.Entry, error) {
			rc, _, err := h.files.read(dg)
			return rc, private, err // marked private since it was kept
		}
	})
	if r := h.upload(t, e); r != "failed" {
		t.Errorf("upload of what the file says is private: %s, want failed", r)
	}
	if n := h.sent.count(http.MethodPut); n != 0 {
		t.Errorf("PUTs sent: %d, want 0", n)
	}
}
