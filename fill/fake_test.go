package fill

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// source is a fake origin of one object: it answers ranges as a registry
// does, counts and records every request, and can ignore Range, cut or
// corrupt its answers, name another digest, and hold requests until
// release closes.
type source struct {
	data      []byte
	mediaType string
	// Set before the fill starts, read only after.
	ignoreRange bool
	cutAfter    int64 // > 0: every body ends with an error after this many bytes
	corrupt     bool  // one byte of every body flipped
	unknownSize bool  // answers say no size
	digest      oci.Digest
	// hold, when set, holds the requests it picks until release closes;
	// arrived, when set, is told of every request as it arrives.
	hold    func(oci.Request) bool
	release chan struct{}
	arrived chan oci.Request

	mu   sync.Mutex // guards reqs
	reqs []oci.Request
}

func newSource(t testing.TB, size int) *source {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return &source{data: data, digest: oci.FromBytes(data)}
}

func (s *source) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, *req)
	s.mu.Unlock()
	if s.arrived != nil {
		s.arrived <- *req
	}
	if s.hold != nil && s.hold(*req) {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	size := int64(len(s.data))
	start, end := req.Offset, size
	switch {
	case s.ignoreRange:
		start = 0
	case req.Suffix > 0:
		start = max(size-req.Suffix, 0)
	case req.Length > 0:
		end = min(start+req.Length, size)
	}
	if start >= size && size > 0 {
		return nil, &oci.Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid, Message: "range"}
	}
	body := bytes.Clone(s.data[start:end])
	if s.corrupt && len(body) > 0 {
		body[len(body)/2] ^= 0xff
	}
	var r io.Reader = bytes.NewReader(body)
	if s.cutAfter > 0 && s.cutAfter < int64(len(body)) {
		r = io.MultiReader(bytes.NewReader(body[:s.cutAfter]), errReader{io.ErrUnexpectedEOF})
	}
	resp := &oci.Response{Digest: s.digest, MediaType: s.mediaType, Size: size, Offset: start, End: end,
		Body: io.NopCloser(r)}
	if s.unknownSize {
		resp.Size, resp.End = -1, -1
	}
	return resp, nil
}

// requests returns the requests made so far, as windows, in order.
func (s *source) requests() []oci.Window {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]oci.Window, 0, len(s.reqs))
	for _, r := range s.reqs {
		out = append(out, oci.Window{Offset: r.Offset, Length: r.Length, Suffix: r.Suffix})
	}
	return out
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// notifying is a source that fails its first attempt of each request
// as unreachable, as retry.Origin tells its caller, before answering.
type notifying struct{ *source }

func (n notifying) FetchNotify(ctx context.Context, req *oci.Request, failed func(error)) (*oci.Response, error) {
	if failed != nil {
		failed(oci.ErrUpstreamUnavailable)
	}
	return n.Fetch(ctx, req)
}

// pending is an in-memory pending file that counts what is claimed.
type pending struct {
	mu      sync.Mutex // guards b, claimed, aborted and closed
	b       []byte
	claimed int64
	aborted bool
	closed  bool
}

func (p *pending) File() flight.File { return p }

func (p *pending) WriteAt(b []byte, off int64) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if need := int(off) + len(b); need > len(p.b) {
		p.b = append(p.b, make([]byte, need-len(p.b))...)
	}
	return copy(p.b[off:], b), nil
}

func (p *pending) ReadAt(b []byte, off int64) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if off >= int64(len(p.b)) {
		return 0, io.EOF
	}
	n := copy(b, p.b[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (p *pending) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func (p *pending) Claim(n int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claimed += n
	return nil
}

func (p *pending) Failed(err error) error { return err }

func (p *pending) Abort() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.aborted = true
}

// run is what one fill did: what Run returned, the pending file Create
// made (nil if none) and how many times Create was called.
type run struct {
	res     Result
	err     error
	p       *pending
	created int
}

// fillOnce fills s's object (digest dg) with cfg, as a blob unless
// manifest, the starter's window first, into f (a new flight if nil), and
// finishes the flight with the outcome.
func fillOnce(t *testing.T, s Source, dg oci.Digest, cfg Config, manifest bool, window oci.Window, f *flight.Flight) run {
	t.Helper()
	if f == nil {
		f = flight.New(dg)
	}
	var out run
	kind := oci.KindBlob
	if manifest {
		kind = oci.KindManifest
	}
	out.res, out.err = Run(t.Context(), Job{
		Config: cfg, Flight: f, Window: window, Source: s,
		Request: oci.Request{Method: http.MethodGet, Kind: kind, Registry: "registry.test", Repository: "app",
			Reference: oci.Reference{Digest: dg}},
		Create: func(size int64, mediaType string) (Pending, error) {
			out.created++
			out.p = &pending{}
			return out.p, nil
		},
	})
	f.Finish(out.err)
	return out
}

// wantObject fails t unless r is a success that wrote data whole.
func (r run) wantObject(t *testing.T, data []byte) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("fill: %v", r.err)
	}
	if r.res.Written != int64(len(data)) || r.res.Pending != r.p || r.created != 1 {
		t.Fatalf("result %+v (created %d), want %d bytes in its pending file", r.res, r.created, len(data))
	}
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	if !bytes.Equal(r.p.b, data) || r.p.claimed != int64(len(data)) || r.p.aborted || !r.p.closed {
		t.Fatalf("pending file: %d bytes, equal %v, %d claimed, aborted %v, closed %v",
			len(r.p.b), bytes.Equal(r.p.b, data), r.p.claimed, r.p.aborted, r.p.closed)
	}
}

// wantFault fails t unless r failed with an error marked as the
// registry's, with its pending file (if any) aborted.
func (r run) wantFault(t *testing.T) {
	t.Helper()
	if !errors.Is(r.err, oci.ErrUpstreamFault) {
		t.Fatalf("fill: %v, want the registry's fault", r.err)
	}
	r.wantAborted(t)
}

func (r run) wantAborted(t *testing.T) {
	t.Helper()
	if r.res.Pending != nil {
		t.Errorf("a failed fill returned its pending file")
	}
	if r.p != nil {
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		if !r.p.aborted {
			t.Error("the pending file of a failed fill was not aborted")
		}
	}
}

// sorted returns ws in ascending order.
func sorted(ws []oci.Window) []oci.Window {
	ws = slices.Clone(ws)
	slices.SortFunc(ws, func(a, b oci.Window) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Suffix, b.Suffix))
	})
	return ws
}
