package cache

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// scripted is a body that answers each Read with its next piece (as much
// of it as fits), then io.EOF, and notes what its registry held of the
// budget when each Read came.
type scripted struct {
	pieces   [][]byte
	b        *readMemory
	registry string
	held     []int64
}

func (s *scripted) Read(p []byte) (int, error) {
	s.held = append(s.held, s.b.inUseBy(s.registry))
	if len(s.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.pieces[0])
	if s.pieces[0] = s.pieces[0][n:]; len(s.pieces[0]) == 0 {
		s.pieces = s.pieces[1:]
	}
	return n, nil
}

func refusedReads(b *readMemory, kind string) int {
	return int(testutil.ToFloat64(b.refused.WithLabelValues(kind)))
}

// TestReadsClaimAsBytesArrive: a read claims the budget a step at a time,
// each step when its first byte has come, never ahead of the bytes; the
// end of a body that fills its last step exactly claims nothing more.
func TestReadsClaimAsBytesArrive(t *testing.T) {
	b := newReadMemory(1<<20, newTestMetrics())
	body := &scripted{b: b, registry: "a.example", pieces: [][]byte{
		{1}, bytes.Repeat([]byte{2}, readStep-1), {3}, bytes.Repeat([]byte{4}, 10),
	}}
	w, err := b.readWhole(body, "a.example", 1<<20, "manifest")
	if err != nil {
		t.Fatal(err)
	}
	// Read by Read: the first byte (nothing claimed yet), the rest of the
	// first step (one step claimed), the first byte of the second step,
	// the 10 bytes after it, and the end.
	want := []int64{0, readStep, readStep, 2 * readStep, 2 * readStep}
	if diff := cmp.Diff(want, body.held); diff != "" {
		t.Errorf("claims held at each read (-want +got):\n%s", diff)
	}
	if w.Len() != readStep+11 || b.inUseBy("a.example") != 2*readStep || b.highWater() != 2*readStep {
		t.Errorf("read %d bytes holding %d (high water %d); want %d holding %d",
			w.Len(), b.inUseBy("a.example"), b.highWater(), readStep+11, 2*readStep)
	}
	data, err := w.bytes("manifest")
	if err != nil || int64(len(data)) != w.Len() || cap(data) != len(data) || data[0] != 1 || data[readStep] != 3 {
		t.Fatalf("bytes: %d bytes (cap %d), %v", len(data), cap(data), err)
	}
	// The copy was claimed beside the pieces, then the pieces given back.
	if got := b.inUseBy("a.example"); got != readStep+11 || b.highWater() != 3*readStep+11 {
		t.Errorf("after the copy: holding %d, high water %d; want %d, %d", got, b.highWater(), readStep+11, 3*readStep+11)
	}
	w.release()
	w.release()
	if got := b.inUseBy(""); got != 0 {
		t.Errorf("after release: %d bytes held, want 0", got)
	}

	// A body that ends at a step's end claims that step only.
	exact := &scripted{b: b, registry: "a.example", pieces: [][]byte{make([]byte, readStep)}}
	w, err = b.readWhole(exact, "a.example", 1<<20, "manifest")
	if err != nil || w.Len() != readStep || b.inUseBy("a.example") != readStep {
		t.Fatalf("a body of one step: %v, %d bytes holding %d", err, w.Len(), b.inUseBy("a.example"))
	}
	w.release()
}

// TestReadRefusedAtOnce: a step that does not fit in the registry's
// quarter fails at once with 503 UNAVAILABLE, Retry-After and the bound
// named, and gives back what the read held; another registry still reads.
func TestReadRefusedAtOnce(t *testing.T) {
	b := newReadMemory(8*readStep, newTestMetrics()) // a quarter: 2 steps
	held, err := b.readWhole(bytes.NewReader(make([]byte, readStep+1)), "a.example", 1<<20, "manifest")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.readWhole(bytes.NewReader(make([]byte, 10)), "a.example", 1<<20, "tags")
	if !isStatus(err, http.StatusServiceUnavailable) || !strings.Contains(err.Error(), "read memory full") ||
		!strings.Contains(err.Error(), "a.example") {
		t.Fatalf("a read past the quarter: %v, want 503 naming the bound", err)
	}
	if e, ok := oci.AsError(err); !ok || e.RetryAfterHeader == "" || e.Code != oci.CodeUnavailable {
		t.Errorf("refusal %+v: want UNAVAILABLE with Retry-After", e)
	}
	if got := b.inUseBy("a.example"); got != 2*readStep {
		t.Errorf("a.example holds %d after a refusal, want %d (the first read's)", got, 2*readStep)
	}
	if n := refusedReads(b, "tags"); n != 1 {
		t.Errorf("refused tags reads: %d, want 1", n)
	}
	other, err := b.readWhole(bytes.NewReader(make([]byte, 2*readStep)), "b.example", 1<<20, "manifest")
	if err != nil {
		t.Fatalf("another registry's read: %v", err)
	}
	// A refusal mid-read gives back the steps it had.
	_, err = b.readWhole(bytes.NewReader(make([]byte, 2*readStep+1)), "c.example", 1<<20, "manifest")
	if !isStatus(err, http.StatusServiceUnavailable) || b.inUseBy("c.example") != 0 {
		t.Errorf("a read of 3 steps in a quarter of 2: %v, holding %d after", err, b.inUseBy("c.example"))
	}
	held.release()
	other.release()
	if got := b.inUseBy(""); got != 0 {
		t.Errorf("%d bytes held after every release, want 0", got)
	}
}

// TestReadBeyondLimit: a body longer than the limit is 413 and holds
// nothing; one of exactly the limit is read.
func TestReadBeyondLimit(t *testing.T) {
	b := newReadMemory(64<<20, newTestMetrics())
	for _, limit := range []int64{100, readStep} {
		if _, err := b.readWhole(bytes.NewReader(make([]byte, limit+1)), "a.example", limit, "manifest"); !isStatus(err, http.StatusRequestEntityTooLarge) {
			t.Errorf("%d bytes with a limit of %d: %v, want 413", limit+1, limit, err)
		}
		w, err := b.readWhole(bytes.NewReader(make([]byte, limit)), "a.example", limit, "manifest")
		if err != nil || w.Len() != limit {
			t.Fatalf("%d bytes with a limit of %d: %v", limit, limit, err)
		}
		w.release()
	}
	failing := io.MultiReader(bytes.NewReader(make([]byte, 10)), origintest.ErrReader{Err: errors.New("cut")})
	if _, err := b.readWhole(failing, "a.example", 100, "manifest"); err == nil || b.inUseBy("") != 0 {
		t.Errorf("a cut body: %v, holding %d after", err, b.inUseBy(""))
	}
}
