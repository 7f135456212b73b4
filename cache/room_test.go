package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// TestOverBudgetIsStreamedUncached: an object larger than the disk budget
// is still served, verified, and counted, but not kept.
func TestOverBudgetIsStreamedUncached(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 300<<10)
	dg := o.Add(data, "")
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0; cfg.DiskBytes = 100 << 10 })
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if obj.Source != SourceUncached {
		t.Errorf("source %v, want uncached", obj.Source)
	}
	if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uncached body: %v", err)
	}
	c.wg.Wait()
	if n := testutil.ToFloat64(c.m.Uncached.WithLabelValues("budget")); n != 1 {
		t.Errorf("uncached{budget} = %v, want 1", n)
	}
	assertNoFiles(t, c.cfg.Dir)
}

// mountTmpfs mounts a tmpfs of the given size ("1m") in a new directory and
// unmounts it when the test ends. It needs root: in CI that is a
// requirement, elsewhere the test is skipped.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs (CI runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a small tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestDiskFullIsStreamedUncached: on a file system without room, the pull
// is served straight from upstream and counted; nothing half-written stays.
func TestDiskFullIsStreamedUncached(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	o := origintest.New()
	data := randomBytes(t, 2<<20)
	dg := o.Add(data, "")
	c := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0; cfg.DiskBytes = 0 })
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if obj.Source != SourceUncached {
		t.Errorf("source %v, want uncached", obj.Source)
	}
	if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("body on a full disk: %v", err)
	}
	c.wg.Wait()
	if n := testutil.ToFloat64(c.m.Uncached.WithLabelValues("disk")); n != 1 {
		t.Errorf("uncached{disk} = %v, want 1", n)
	}
	assertNoFiles(t, dir)
}

// TestReadOnlyDiskStreamsUncached: a cache file system that turns
// read-only (ext4 errors=remount-ro) serves what it holds and streams every
// miss uncached, verified and counted, never a 500.
func TestReadOnlyDiskStreamsUncached(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	o := origintest.New()
	held, missed := randomBytes(t, 100<<10), randomBytes(t, 100<<10)
	dh, dm := o.Add(held, ""), o.Add(missed, "")
	c := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0 })
	fillAndWait(t, c, blobReq(dh))
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("mount", "-o", "remount,rw", dir).Run() })
	for range 2 {
		obj, err := c.Get(t.Context(), blobReq(dh))
		if err != nil {
			t.Fatalf("held content on a read-only disk: %v", err)
		}
		if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, held) || obj.Source != SourceDisk {
			t.Errorf("held content on a read-only disk: source %v, err %v", obj.Source, err)
		}
		obj, err = c.Get(t.Context(), blobReq(dm))
		if err != nil {
			t.Fatalf("a miss on a read-only disk: %v", err)
		}
		if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, missed) || obj.Source != SourceUncached {
			t.Errorf("a miss on a read-only disk: source %v, err %v", obj.Source, err)
		}
	}
	c.wg.Wait()
	if n := testutil.ToFloat64(c.m.Uncached.WithLabelValues("disk")); n != 2 {
		t.Errorf("uncached{disk} = %v, want 2", n)
	}
}

// TestWriteFailureStreamsLaterPullsUncached: a write that fails in the
// middle of a fill breaks that fill's responses (they never complete
// wrong), leaves nothing, and the pulls that follow are streamed uncached
// while the file system is failing.
func TestWriteFailureStreamsLaterPullsUncached(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	data := randomBytes(t, 2<<20)
	dg := oci.FromBytes(data)
	// No announced size, so nothing is preallocated: the write itself fails.
	o := OriginFunc(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
		return &oci.Response{Size: -1, Body: io.NopCloser(bytes.NewReader(data[req.Offset:])), Offset: req.Offset}, nil
	})
	c := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0; cfg.DiskBytes = 0 })
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); !errors.Is(err, tier.ErrFailed) || len(got) >= len(data) {
		t.Errorf("fill on a failing disk: %d bytes, err %v; want a broken response", len(got), err)
	}
	c.wg.Wait()
	assertNoFiles(t, dir)
	obj, err = c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) || obj.Source != SourceUncached {
		t.Errorf("the next pull: source %v, err %v; want it whole, uncached", obj.Source, err)
	}
}

// endless is a body that never ends, counting what it gave.
type endless struct{ n atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	e.n.Add(int64(len(p)))
	return len(p), nil
}

func (e *endless) Close() error { return nil }

// TestEndlessBodyStopsAtTheBudget: a body without Content-Length counts
// against the disk budget as it is written, so an endless one fails the
// fill once the budget is spent instead of filling the file system, and
// leaves nothing behind.
func TestEndlessBodyStopsAtTheBudget(t *testing.T) {
	const budget = 1 << 20
	body := &endless{}
	dg := oci.FromBytes([]byte("never"))
	o := OriginFunc(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
		return &oci.Response{Size: -1, Body: body}, nil
	})
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0; cfg.DiskBytes = budget })
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, obj); !errors.Is(err, tier.ErrNoRoom) {
		t.Errorf("endless body: %v, want tier.ErrNoRoom", err)
	}
	c.wg.Wait()
	if n := body.n.Load(); n > budget+copyBuffer {
		t.Errorf("read %d bytes of an endless body under a budget of %d", n, budget)
	}
	_, _, reserved := c.disk.Usage()
	if reserved != 0 {
		t.Errorf("reserved = %d after the fill ended", reserved)
	}
	assertNoFiles(t, c.cfg.Dir)
}

// TestReservationsNeverExceedTheBudget: fills that announce more than the
// budget holds beside the fills in flight are streamed uncached (and
// counted), instead of evicting everything committed to make room.
func TestReservationsNeverExceedTheBudget(t *testing.T) {
	o := origintest.New()
	const small, big = 50 << 10, 200 << 10
	var kept []oci.Digest
	for range 3 {
		kept = append(kept, o.Add(randomBytes(t, small), ""))
	}
	var bigs []oci.Digest
	datas := map[oci.Digest][]byte{}
	for range 3 {
		data := randomBytes(t, big)
		dg := o.Add(data, "")
		bigs, datas[dg] = append(bigs, dg), data
	}
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0; cfg.DiskBytes = 300 << 10 })
	for _, dg := range kept {
		fillAndWait(t, c, blobReq(dg))
	}
	gate := make(chan struct{})
	o.Set(func(o *origintest.Origin) { o.Gate = gate })
	var objs []*Object
	for _, dg := range bigs {
		obj, err := c.Get(t.Context(), blobReq(dg))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, obj)
		if _, _, reserved := c.disk.Usage(); reserved > c.cfg.DiskBytes {
			t.Errorf("reserved %d of a budget of %d", reserved, c.cfg.DiskBytes)
		}
	}
	if got := []Source{objs[0].Source, objs[1].Source, objs[2].Source}; got[0] != SourceFillNew || got[1] != SourceUncached || got[2] != SourceUncached {
		t.Errorf("sources %v, want a fill and two uncached", got)
	}
	if n := testutil.ToFloat64(c.m.Uncached.WithLabelValues("budget")); n != 2 {
		t.Errorf("uncached{budget} = %v, want 2", n)
	}
	if _, n := diskUsage(c); n == 0 {
		t.Error("every committed object was evicted")
	}
	close(gate)
	for i, obj := range objs {
		if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, datas[bigs[i]]) {
			t.Errorf("big %d: %v", i, err)
		}
	}
}

// TestLongerThanAnnouncedFails: a body with more bytes than its announced
// size fails the fill and leaves nothing.
func TestLongerThanAnnouncedFails(t *testing.T) {
	data := randomBytes(t, 64<<10)
	dg := oci.FromBytes(data)
	o := OriginFunc(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
		long := append(bytes.Clone(data), "and more"...)
		return &oci.Response{Size: int64(len(data)), Body: io.NopCloser(bytes.NewReader(long))}, nil
	})
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0 })
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); err == nil {
		t.Errorf("a body longer than announced was served whole (%d bytes)", len(got))
	}
	c.wg.Wait()
	if held(c, dg) {
		t.Error("a body longer than announced was committed")
	}
	assertNoFiles(t, c.cfg.Dir)
}
