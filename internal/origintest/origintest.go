// Package origintest is the fake origin of cacheyd's tests: an in-memory
// registry with the method set of cache.Origin that counts what it is asked
// and the bodies it hands out, and can be told to hold bodies back or let
// them out piece by piece, send wrong bytes, leave out the size or the
// digest, refuse anonymous requests, fail, cut bodies short or hang. The
// cache's tests, the retry wrapper's and the server's all use it.
package origintest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

// Origin is the fake. Its zero value is not usable: use New. Faults are set
// with Set, under its lock.
type Origin struct {
	mu       sync.Mutex // guards everything below
	objects  map[oci.Digest]object
	tags     map[string]oci.Digest
	listings map[string]Listing // by listingKey
	calls    map[string]int     // "GET blob sha256:..." → count

	// Gate, when set, makes every GET body wait for it to close before
	// sending its second half.
	Gate chan struct{}
	// Pace, when set, makes every GET body send nothing of its own: each n
	// received from it lets n more bytes out (to whichever body takes it),
	// and its closing lets the rest out. A slow upstream, step by step.
	Pace chan int
	// UnknownSize answers every request with Size -1, as a registry that
	// sends no Content-Length (a chunked body).
	UnknownSize bool
	// NoDigest answers every request without a digest, as a registry that
	// sends no Docker-Content-Digest.
	NoDigest bool
	// Corrupt flips a byte of every body sent.
	Corrupt bool
	// Private demands this Authorization for everything; anything else is
	// refused with Refusal.
	Private string
	// Refusal is Private's answer to the wrong Authorization; nil means a
	// 401 with a Bearer challenge and no body.
	Refusal *oci.Error
	// Fail, when set, is returned for every request.
	Fail error
	// FailNext is returned for the next FailCount GETs and the next
	// FailHeads HEADs.
	FailNext  error
	FailCount int
	FailHeads int
	// CutAfter, while CutCount > 0, ends the next CutCount GET bodies with
	// CutErr (io.ErrUnexpectedEOF when nil) after CutAfter bytes.
	CutAfter int64
	CutCount int
	CutErr   error
	// HangAfter, while HangCount > 0, makes the next HangCount GET bodies
	// send HangAfter bytes and then nothing until the request is cancelled.
	HangAfter int64
	HangCount int
	// IgnoreRange answers every GET with the whole object, as a server
	// that does not do ranges.
	IgnoreRange bool
	// Offsets records the Offset of every GET.
	Offsets []int64

	bodies Bodies // every GET body handed out
}

type object struct {
	data      []byte
	mediaType string
}

// New returns an empty fake origin.
func New() *Origin {
	return &Origin{objects: map[oci.Digest]object{}, tags: map[string]oci.Digest{}, listings: map[string]Listing{}, calls: map[string]int{}}
}

// Listing is a tag list or referrers answer of the origin.
type Listing struct {
	Body                            []byte
	MediaType, Link, FiltersApplied string
}

// ListRef is how Count names a listing: the digest whose referrers are
// listed ("" for a tag list), "?" and the query.
func ListRef(ref string, q oci.ListQuery) string { return ref + "?" + q.Encode() }

func listingKey(k oci.Kind, ref string, q oci.ListQuery) string {
	return k.String() + " " + ListRef(ref, q)
}

// AddListing makes the origin answer l to a listing of kind k (KindTags,
// KindReferrers) for ref (the referrers' digest, "" for tags) and query q;
// other listings are 404 NAME_UNKNOWN.
func (o *Origin) AddListing(k oci.Kind, ref string, q oci.ListQuery, l Listing) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listings[listingKey(k, ref, q)] = l
}

// Add holds data (with a manifest's media type, or "") and returns its digest.
func (o *Origin) Add(data []byte, mediaType string) oci.Digest {
	dg := oci.FromBytes(data)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.objects[dg] = object{data, mediaType}
	return dg
}

// Tag points tag at dg.
func (o *Origin) Tag(tag string, dg oci.Digest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tags[tag] = dg
}

// Remove forgets tag and the object dg, as a registry that deleted them.
func (o *Origin) Remove(tag string, dg oci.Digest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.tags, tag)
	delete(o.objects, dg)
}

// Count reports how often method was asked for kind ref (a digest or tag).
func (o *Origin) Count(method string, k oci.Kind, ref string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[method+" "+k.String()+" "+ref]
}

// Set changes the fake under its lock.
func (o *Origin) Set(fn func(o *Origin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fn(o)
}

// OpenBodies reports how many GET bodies the origin handed out that were
// not closed yet: zero once every reader of them is done, unless one leaked.
func (o *Origin) OpenBodies() int { return o.bodies.Open() }

// GETOffsets returns the Offset of every GET so far.
func (o *Origin) GETOffsets() []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int64(nil), o.Offsets...)
}

// Fetch answers req like a registry would, with the faults set.
func (o *Origin) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	ref := req.Reference.String()
	if req.Kind.IsListing() {
		ref = ListRef(ref, req.List)
	}
	o.calls[req.Method+" "+req.Kind.String()+" "+ref]++
	gate, pace, corrupt, private, refusal, fail, cutErr := o.Gate, o.Pace, o.Corrupt, o.Private, o.Refusal, o.Fail, o.CutErr
	unknownSize, noDigest, ignoreRange := o.UnknownSize, o.NoDigest, o.IgnoreRange
	cut, hang := int64(-1), int64(-1)
	if req.Method == http.MethodHead && o.FailHeads > 0 {
		o.FailHeads--
		fail = o.FailNext
	}
	if req.Method == http.MethodGet {
		o.Offsets = append(o.Offsets, req.Offset)
		if o.FailCount > 0 {
			o.FailCount--
			fail = o.FailNext
		}
		if o.CutCount > 0 {
			o.CutCount--
			cut = o.CutAfter
		}
		if o.HangCount > 0 {
			o.HangCount--
			hang = o.HangAfter
		}
	}
	dg := req.Reference.Digest
	if !req.Reference.IsDigest() {
		dg = o.tags[req.Reference.Tag]
	}
	obj, ok := o.objects[dg]
	listing, listed := o.listings[listingKey(req.Kind, req.Reference.String(), req.List)]
	if req.Kind.IsListing() {
		obj, ok = object{listing.Body, listing.MediaType}, listed
	}
	o.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	if private != "" && req.Authorization != private {
		if refusal != nil {
			return nil, refusal
		}
		return nil, &oci.Error{Status: http.StatusUnauthorized, Code: oci.CodeUnauthorized, Message: "auth",
			Challenge: `Bearer realm="http://localhost:1/token"`}
	}
	if !ok {
		code := oci.CodeBlobUnknown
		switch {
		case req.Kind == oci.KindManifest:
			code = oci.CodeManifestUnknown
		case req.Kind.IsListing():
			code = oci.CodeNameUnknown
		}
		return nil, &oci.Error{Status: http.StatusNotFound, Code: code, Message: "unknown"}
	}
	size := int64(len(obj.data))
	resp := &oci.Response{Digest: dg, MediaType: obj.mediaType, Size: size, End: size}
	if req.Kind.IsListing() {
		resp.Digest, resp.Link, resp.FiltersApplied = "", listing.Link, listing.FiltersApplied
	}
	if noDigest {
		resp.Digest = ""
	}
	if req.Method == http.MethodHead {
		if unknownSize {
			resp.Size, resp.End = -1, -1
		}
		return resp, nil
	}
	start, end := req.Offset, size
	switch {
	case ignoreRange:
		start = 0
	case req.Suffix > 0:
		start = max(size-req.Suffix, 0)
	case req.Length > 0:
		end = min(start+req.Length, size)
	}
	if start > size {
		return nil, &oci.Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid, Message: "range"}
	}
	data := bytes.Clone(obj.data[start:end])
	resp.Offset, resp.End = start, end
	if unknownSize {
		resp.Size, resp.End = -1, -1
	}
	if corrupt && len(data) > 0 {
		data[len(data)/2] ^= 0xff
	}
	switch {
	case hang >= 0 && hang < int64(len(data)):
		resp.Body = hanging(ctx, data[:hang])
	case cut >= 0 && cut < int64(len(data)):
		if cutErr == nil {
			cutErr = io.ErrUnexpectedEOF
		}
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data[:cut]), ErrReader{cutErr}))
	case gate != nil:
		resp.Body = gated(ctx, data, gate)
	case pace != nil:
		resp.Body = paced(ctx, data, pace)
	default:
		resp.Body = io.NopCloser(bytes.NewReader(data))
	}
	resp.Body = o.bodies.Track(resp.Body)
	return resp, nil
}

// hanging sends data, then nothing until ctx ends.
func hanging(ctx context.Context, data []byte) io.ReadCloser {
	pr, pw := io.Pipe()
	// Stops when the request's context ends or the reader closes the pipe.
	go func() {
		if _, err := pw.Write(data); err != nil {
			return
		}
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	return pr
}

// gated sends the first half of data, then the rest once gate closes.
func gated(ctx context.Context, data []byte, gate chan struct{}) io.ReadCloser {
	pr, pw := io.Pipe()
	// Stops when the whole body is written, the reader closes the pipe or
	// the request's context ends.
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
	return pr
}

// paced sends data as pace lets it out: n bytes for each n received, the
// rest once pace is closed.
func paced(ctx context.Context, data []byte, pace <-chan int) io.ReadCloser {
	pr, pw := io.Pipe()
	// Stops when the whole body is written, the reader closes the pipe or
	// the request's context ends.
	go func() {
		for len(data) > 0 {
			n := len(data)
			select {
			case k, ok := <-pace:
				if ok {
					n = min(k, n)
				}
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			}
			if _, err := pw.Write(data[:n]); err != nil {
				return
			}
			data = data[n:]
		}
		pw.Close()
	}()
	return pr
}

// Bodies counts bodies handed out and closed, so that a test can prove
// every body was closed by whoever took it. The zero value is ready.
type Bodies struct {
	mu             sync.Mutex // guards opened and closed
	opened, closed int
}

// Track counts body as handed out and returns it with a Close that counts
// it closed, once however often it is called.
func (b *Bodies) Track(body io.ReadCloser) io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opened++
	return &tracked{ReadCloser: body, b: b}
}

// Open reports how many tracked bodies are not closed yet.
func (b *Bodies) Open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened - b.closed
}

type tracked struct {
	io.ReadCloser
	b    *Bodies
	once sync.Once
}

func (t *tracked) Close() error {
	t.once.Do(func() {
		t.b.mu.Lock()
		t.b.closed++
		t.b.mu.Unlock()
	})
	return t.ReadCloser.Close()
}

// ErrReader fails every read with Err.
type ErrReader struct{ Err error }

func (e ErrReader) Read([]byte) (int, error) { return 0, e.Err }

// Func adapts a function to the origin method set.
type Func func(ctx context.Context, req *oci.Request) (*oci.Response, error)

// Fetch calls f.
func (f Func) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) { return f(ctx, req) }

// Unavailable is an origin that cannot be reached at all.
var Unavailable = Func(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
	return nil, errors.Join(errors.New("origin asked for "+req.Reference.String()), oci.ErrUpstreamUnavailable)
})

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
