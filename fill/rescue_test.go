package fill

import (
	"bytes"
	"context"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
)

// TestStrandedReaderIsRescued: a reader in the middle of a blob whose
// regular requests are all busy (held here) gets a request of its own at
// once, told to Rescued; the fill still asks for each byte once, with
// exactly one request per region.
func TestStrandedReaderIsRescued(t *testing.T) {
	const size, footer = 16 * chunk, 4096
	const mid = 8*chunk + 100
	s := newSource(t, size)
	s.arrived = make(chan oci.Request, 64) // room for every request
	s.release = make(chan struct{})
	// Held: every request but the footer and the rescue's.
	s.hold = func(r oci.Request) bool { return r.Suffix == 0 && r.Offset != mid }
	var rescued atomic.Int32
	f := flight.New(s.digest)
	f.Acquire() // the reader's reference
	done := make(chan run, 1)
	// Ends when the fill does: once release closes, its requests go on.
	go func() {
		done <- fillOnce(t, s, s.digest, Config{Chunk: chunk, Parallel: 2, Rescued: func() { rescued.Add(1) }},
			false, oci.Window{Suffix: footer}, f)
	}()
	for range 3 { // the footer, then the two regular regions
		select {
		case <-s.arrived:
		case <-t.Context().Done():
			t.Fatal("the fill's regular requests did not arrive")
		}
	}
	if err := f.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Bounded, so that without a rescue the test fails rather than waits.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r := f.NewReader(ctx, mid, 1000, false)
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, s.data[mid:mid+1000]) {
		t.Fatalf("stranded reader: %d bytes, %v", len(got), err)
	}
	if n := rescued.Load(); n != 1 {
		t.Errorf("%d rescues, want 1", n)
	}
	close(s.release) // arrived has room for every request after it
	res := <-done
	res.wantObject(t, s.data)
	// The footer, the rescue's chunk from mid on, and regions of a chunk
	// from 0 up: 8 up to mid, the 100 bytes before it, and 7 from the
	// rescue's end to the footer.
	want := sorted(slices.Concat([]oci.Window{{Suffix: footer}}, chunks(0, mid), []oci.Window{w(mid, chunk)},
		chunks(mid+chunk, size-footer)))
	if got := sorted(s.requests()); !slices.Equal(got, want) {
		t.Errorf("%d requests %+v, want %d: %+v", len(got), got, len(want), want)
	}
}
