package cache

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	move "github.com/cacheyd/cacheyd/fill"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestStrandedWindowIsFetchedAtOnce: a lazy pull's second read, a window
// in the middle of a cold blob asked for while every regular request of the
// fill is busy (held here), is answered by a request of its own at once,
// not after a regular one frees; the fill still fetches every byte once,
// with exactly one request per region.
func TestStrandedWindowIsFetchedAtOnce(t *testing.T) {
	const size, chunk = 1 << 20, 64 << 10
	data := randomBytes(t, size)
	up := origintest.New()
	dg := up.Add(data, "")
	const window = 512<<10 + 100
	o := &ranges{up: up, release: make(chan struct{}), pass: func(r oci.Request) bool { return r.Offset == window },
		arrived: make(chan oci.Request, 64)}
	c := newTestCache(t, o, func(cfg *Config) {
		cfg.MemoryBytes, cfg.FillChunk, cfg.FillParallel = 0, chunk, 2
	})
	footer := blobReq(dg)
	footer.Wants.Suffix = 4096
	obj, err := c.Get(t.Context(), footer)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := obj.Body(size-4096, 4096)
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data[size-4096:]) {
		t.Fatalf("footer: %d bytes, %v", len(got), err)
	}
	r.Close()

	// Both regular requests are held (the footer's stream carried on as
	// one of them), so only a rescue can answer this, a
	// region of its own from the window's first byte (bounded, so that
	// without one the test fails rather than waits).
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for range 3 { // the footer, then the two regular regions
		select {
		case <-o.arrived:
		case <-ctx.Done():
			t.Fatal("the fill's regular requests did not arrive")
		}
	}
	mid := blobReq(dg)
	mid.Wants = oci.Window{Offset: window, Length: 1000}
	obj, err = c.Get(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	r, _ = obj.Body(window, 1000)
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data[window:window+1000]) {
		t.Fatalf("stranded window: %d bytes, %v", len(got), err)
	}
	if n := testutil.ToFloat64(c.m.FillRescues); n != 1 {
		t.Errorf("cacheyd_fill_rescues_total %v, want 1", n)
	}
	close(o.release)
	c.wg.Wait()
	if !held(c, dg) {
		t.Fatal("the object was not kept whole")
	}
	o.readOnce(t, size)
	// The footer, the rescue's chunk from the window on, and regions of a
	// chunk from 0 up: 8 up to 512 KiB, the 100 bytes before the window,
	// and 7 from the rescue's end to the footer.
	if gets := o.requests(); len(gets) != 1+1+8+1+7 {
		t.Errorf("%d GETs, want 18: %+v", len(gets), gets)
	}
	if got := fillAndWait(t, c, blobReq(dg)); !bytes.Equal(got, data) {
		t.Error("kept object differs")
	}
}

// TestRescuesAreBounded: however many readers strand at once, a fill has at
// most --fill-parallel regular requests and fill.Rescuers(--fill-parallel)
// rescues open, and still reads each byte once. (How many strand depends
// on how fast the regular requests reach them first; with rescues
// unbounded, 40 readers open 10 to 15 requests here.)
func TestRescuesAreBounded(t *testing.T) {
	const size, chunk, parallel = 2 << 20, 32 << 10, 4
	data := randomBytes(t, size)
	up := origintest.New()
	dg := up.Add(data, "")
	o := &ranges{up: up}
	c := newTestCache(t, o, func(cfg *Config) {
		cfg.MemoryBytes, cfg.FillChunk, cfg.FillParallel = 0, chunk, parallel
	})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() { readWindow(t, c, dg, data, int64(i)*size/40+7, 5000) })
	}
	wg.Wait()
	c.wg.Wait()
	o.readOnce(t, size)
	if most, limit := o.most(), parallel+move.Rescuers(parallel); most > limit {
		t.Errorf("%d upstream requests open at once, want at most %d", most, limit)
	}
}
