package tier

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// fakeOrigin is an in-memory origin that counts what it is asked and can
// hold a body back, send wrong bytes or refuse anonymous requests.
type fakeOrigin struct {
	mu      sync.Mutex // guards everything below
	objects map[string]fakeObject
	tags    map[string]oci.Digest
	calls   map[string]int // "GET blob sha256:..." → count
	// gate, when set, makes every GET body wait for it to close before
	// sending its second half.
	gate chan struct{}
	// corrupt flips a byte of every body sent.
	corrupt bool
	// private demands this Authorization for everything.
	private string
	// fail, when set, is returned for every request.
	fail error
	// failNext is returned for the next failCount GETs, and for the next
	// failHeads HEADs.
	failNext  error
	failCount int
	failHeads int
	// cutAfter, when cutCount > 0, ends the next cutCount GET bodies with
	// an unexpected EOF after cutAfter bytes of the body.
	cutAfter int64
	cutCount int
	cutErr   error // what the cut body fails with; nil means io.ErrUnexpectedEOF
	// hangAfter, when hangCount > 0, makes the next hangCount GET bodies
	// send hangAfter bytes and then nothing until the request is cancelled.
	hangAfter int64
	hangCount int
	// offsets records the Offset of every GET.
	offsets []int64
}

type fakeObject struct {
	data      []byte
	mediaType string
}

func newFakeOrigin() *fakeOrigin {
	return &fakeOrigin{objects: map[string]fakeObject{}, tags: map[string]oci.Digest{}, calls: map[string]int{}}
}

func (o *fakeOrigin) add(data []byte, mediaType string) oci.Digest {
	dg := oci.FromBytes(data)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.objects[string(dg)] = fakeObject{data, mediaType}
	return dg
}

func (o *fakeOrigin) tag(tag string, dg oci.Digest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tags[tag] = dg
}

func (o *fakeOrigin) count(method string, k oci.Kind, ref string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[method+" "+k.String()+" "+ref]
}

func (o *fakeOrigin) set(fn func(o *fakeOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fn(o)
}

func (o *fakeOrigin) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	o.calls[req.Method+" "+req.Kind.String()+" "+req.Reference.String()]++
	gate, corrupt, private, fail, cutErr := o.gate, o.corrupt, o.private, o.fail, o.cutErr
	cut, hang := int64(-1), int64(-1)
	if req.Method == http.MethodHead && o.failHeads > 0 {
		o.failHeads--
		fail = o.failNext
	}
	if req.Method == http.MethodGet {
		o.offsets = append(o.offsets, req.Offset)
		if o.failCount > 0 {
			o.failCount--
			fail = o.failNext
		}
		if o.cutCount > 0 {
			o.cutCount--
			cut = o.cutAfter
		}
		if o.hangCount > 0 {
			o.hangCount--
			hang = o.hangAfter
		}
	}
	ref := req.Reference.String()
	if dg, ok := o.tags[ref]; ok {
		ref = string(dg)
	}
	obj, ok := o.objects[ref]
	o.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	if private != "" && req.Authorization != private {
		return nil, &oci.Error{Status: http.StatusUnauthorized, Code: oci.CodeUnauthorized, Message: "auth",
			Challenge: `Bearer realm="http://localhost:1/token"`}
	}
	if !ok {
		return nil, &oci.Error{Status: http.StatusNotFound, Code: oci.CodeBlobUnknown, Message: "unknown"}
	}
	resp := &oci.Response{Digest: oci.Digest(ref), MediaType: obj.mediaType, Size: int64(len(obj.data))}
	if req.Method == http.MethodHead {
		return resp, nil
	}
	data := bytes.Clone(obj.data[req.Offset:])
	resp.Offset = req.Offset
	if corrupt && len(data) > 0 {
		data[len(data)/2] ^= 0xff
	}
	if hang >= 0 && hang < int64(len(data)) {
		pr, pw := io.Pipe()
		// Stops when the request's context ends.
		go func() {
			if _, err := pw.Write(data[:hang]); err != nil {
				return
			}
			<-ctx.Done()
			pw.CloseWithError(ctx.Err())
		}()
		resp.Body = pr
		return resp, nil
	}
	if cut >= 0 && cut < int64(len(data)) {
		cerr := cutErr
		if cerr == nil {
			cerr = io.ErrUnexpectedEOF
		}
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data[:cut]), errReader{cerr}))
		return resp, nil
	}
	if gate == nil {
		resp.Body = io.NopCloser(bytes.NewReader(data))
		return resp, nil
	}
	pr, pw := io.Pipe()
	// Stops when the whole body is written or the reader closes the pipe.
	go func() {
		half := len(data) / 2
		if _, err := pw.Write(data[:half]); err != nil {
			return
		}
		select {
		case <-gate:
		case <-ctx.Done():
			pw.CloseWithError(ctx.Err())
			return
		}
		_, _ = pw.Write(data[half:])
		pw.Close()
	}()
	resp.Body = pr
	return resp, nil
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestCache(t testing.TB, o Origin, mod func(*Config)) *Cache {
	t.Helper()
	cfg := Config{Dir: t.TempDir(), MemoryBytes: 64 << 20, MemoryMaxObject: 64 << 10, Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func blobReq(dg oci.Digest) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
}

// readAll takes the object's whole body.
func readAll(t testing.TB, obj *Object) ([]byte, error) {
	t.Helper()
	r, err := obj.Body(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return io.ReadAll(r)
}

func itoa(i int) string { return strconv.Itoa(i) }

// quietLogger keeps fill outcomes out of test output.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func newTestMetrics() *metrics.Metrics { return metrics.New(nil) }
