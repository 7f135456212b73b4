package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConcurrentColdReadersShareOneFill is the coalescing promise: however
// many requests ask for a digest at once, upstream is asked once and every
// reader gets the same verified bytes.
func TestConcurrentColdReadersShareOneFill(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 1<<20)
	dg := o.Add(data, "")
	gate := make(chan struct{})
	c := newTestCache(t, origintest.Gate(o, gate), nil)

	const readers = 50
	objs := make([]*Object, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obj, err := c.Get(t.Context(), blobReq(dg))
			if err != nil {
				t.Error(err)
				return
			}
			objs[i] = obj
		}()
	}
	wg.Wait() // every reader holds the fill while the gate holds upstream
	close(gate)
	sources := map[Source]int{}
	for _, obj := range objs {
		if obj == nil {
			t.FailNow()
		}
		sources[obj.Source]++
		got, err := readAll(t, obj)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("reader got %d bytes, err %v; want the %d bytes of %s", len(got), err, len(data), dg.Short())
		}
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
		t.Errorf("upstream GETs = %d, want 1", n)
	}
	if sources[SourceFillNew] != 1 || sources[SourceFillJoined] != readers-1 {
		t.Errorf("sources = %v, want 1 new fill and %d joined", sources, readers-1)
	}
	// Now it is a hit.
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if obj.Source != SourceDisk {
		t.Errorf("after the fill: source %v, want disk", obj.Source)
	}
}

// TestReadersStreamBeforeFillEnds proves readers are not store-and-forward:
// the first half is readable while upstream holds the second half back.
func TestReadersStreamBeforeFillEnds(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 1<<20)
	dg := o.Add(data, "")
	gate := make(chan struct{})
	c := newTestCache(t, origintest.Gate(o, gate), nil)

	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	r, err := obj.Body(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	half := make([]byte, len(data)/2)
	if _, err := io.ReadFull(r, half); err != nil {
		t.Fatalf("first half while upstream waits: %v", err)
	}
	if !bytes.Equal(half, data[:len(half)]) {
		t.Fatal("first half differs")
	}
	// A range reader joining now gets its window from the growing file.
	obj2, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if obj2.Source != SourceFillJoined {
		t.Fatalf("second request source %v, want joined", obj2.Source)
	}
	rr, err := obj2.Body(100, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// All but the window's last byte arrive now; that one waits for the
	// digest to be verified, like the last byte of every window.
	win := make([]byte, 1000)
	if _, err := io.ReadFull(rr, win[:999]); err != nil || !bytes.Equal(win[:999], data[100:1099]) {
		t.Fatalf("range window on a fill in flight: %v", err)
	}
	close(gate)
	if _, err := io.ReadFull(rr, win[999:]); err != nil || win[999] != data[1099] {
		t.Fatalf("range window's last byte after verification: %v", err)
	}
	rr.Close()
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[len(half):]) {
		t.Fatalf("rest: %v", err)
	}
}

// TestLastByteWaitsForVerification: a reader of the whole object cannot
// finish before the digest is checked, while a window whose bytes are in
// is answered at once, as a registry answers a Range.
func TestLastByteWaitsForVerification(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 64<<10)
	dg := o.Add(data, "")
	gate := make(chan struct{})
	c := newTestCache(t, origintest.Gate(o, gate), func(cfg *Config) { cfg.MemoryBytes = 0 })
	half := int64(len(data) / 2)

	window, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := window.Body(half-10, 10)
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data[half-10:half]) {
		t.Fatalf("a written window: %d bytes, %v; want it at once", len(got), err)
	}
	r.Close()

	whole, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	whole.ctx = ctx
	r, _ = whole.Body(0, -1)
	buf := make([]byte, len(data))
	if n, err := io.ReadFull(r, buf[:half]); err != nil || n != int(half) {
		t.Fatalf("the written half: n=%d err=%v", n, err)
	}
	cancel() // the rest waits for upstream, then the last byte for verification
	if _, err := io.ReadFull(r, buf[half:]); !errors.Is(err, context.Canceled) {
		t.Fatalf("the whole object before verification: err %v, want context.Canceled", err)
	}
	r.Close()
	close(gate)
}

// TestCorruptUpstreamNeverCached: wrong bytes of the right length give
// every reader an error at the end and leave nothing on disk.
func TestCorruptUpstreamNeverCached(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 512<<10)
	dg := o.Add(data, "")
	corrupt := origintest.Corrupt(o)
	c := newTestCache(t, corrupt, nil)

	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, obj)
	if err == nil {
		t.Fatal("corrupt upstream: read completed without error")
	}
	if len(got) >= len(data) {
		t.Fatalf("corrupt upstream: reader got %d bytes (all of them)", len(got))
	}
	c.wg.Wait()
	assertNoFiles(t, c.cfg.Dir)
	// The next request starts afresh.
	corrupt.Off()
	obj, err = c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a corrupt fill: %v", err)
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
		t.Errorf("upstream GETs = %d, want 2 (corrupt, then good)", n)
	}
}

// TestStarterLeavesFillGoesOn: the request that started a fill going away
// does not stop it; another reader gets every byte, and it is committed.
func TestStarterLeavesFillGoesOn(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 2<<20)
	dg := o.Add(data, "")
	gate := make(chan struct{})
	c := newTestCache(t, origintest.Gate(o, gate), nil)

	startCtx, leave := context.WithCancel(t.Context())
	first, err := c.Get(startCtx, blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := first.Body(0, -1)
	if _, err := io.ReadFull(r1, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	second, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	leave()
	r1.Close()
	close(gate)
	got, err := readAll(t, second)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second reader after the starter left: %v", err)
	}
	c.wg.Wait()
	if !held(c, dg) {
		t.Fatal("fill was not committed after its starter left")
	}
}

// TestFailedUpstreamBeforeBody: a 404 reaches every waiter as the
// registry's answer, and nothing is kept.
func TestFailedUpstreamBeforeBody(t *testing.T) {
	o := origintest.New()
	c := newTestCache(t, o, nil)
	dg := oci.FromBytes([]byte("absent"))
	_, err := c.Get(t.Context(), blobReq(dg))
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusNotFound {
		t.Fatalf("err = %v, want a 404 *oci.Error", err)
	}
	c.wg.Wait()
	assertNoFiles(t, c.cfg.Dir)
}

// assertNoFiles fails if any file (not directory) is left under dir.
func assertNoFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("file left behind: %s", p)
		}
		return nil
	})
}

// TestStalledReaderHoldsNobodyBack: a reader that stops reading (a client
// at a few KB/s) does not slow the fill or the other readers: the fill
// commits and another reader finishes while the stalled one is still open.
func TestStalledReaderHoldsNobodyBack(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 4<<20)
	dg := o.Add(data, "")
	c := newTestCache(t, o, nil)
	slow, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	sr, _ := slow.Body(0, -1)
	if _, err := io.ReadFull(sr, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	// The stalled reader reads nothing more until the end of the test.
	fast, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, fast); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fast reader: %v", err)
	}
	c.wg.Wait() // the fill ended while the slow reader still holds it
	if !held(c, dg) {
		t.Fatal("fill not committed while a reader stalled")
	}
	rest, err := io.ReadAll(sr)
	sr.Close()
	if err != nil || !bytes.Equal(append(data[:10:10], rest...), data) {
		t.Fatalf("stalled reader, resumed: %v", err)
	}
}
