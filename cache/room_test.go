package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	move "github.com/cacheyd/cacheyd/fill"
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
	if n := body.n.Load(); n > budget+move.Buffer {
		t.Errorf("read %d bytes of an endless body under a budget of %d", n, budget)
	}
	_, _, reserved := diskOf(c).Usage()
	if reserved != 0 {
		t.Errorf("reserved = %d after the fill ended", reserved)
	}
	assertNoFiles(t, c.cfg.Dir)
}

// TestAnnouncementsTakeNoBudget: a registry that announces a blob of any
// size and then drips its bytes takes nothing of the disk budget for the
// announcement. Committed content is evicted only for bytes that arrived;
// a blob announced larger than half the budget is streamed uncached at
// once; and meanwhile a burst of another registry's clients for a blob
// makes one fill, which every client reads, instead of streaming uncached
// each.
func TestAnnouncementsTakeNoBudget(t *testing.T) {
	const budget, object, kept, dripped = 4 << 20, 512 << 10, 6, 64 << 10
	for _, tc := range []struct {
		name      string
		announced int64
		uncached  float64 // the hostile request's own
	}{
		{"just under the budget", budget - 1, 1},
		{"half the budget", budget / 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			honest := origintest.New()
			var keep []oci.Digest
			for range kept {
				keep = append(keep, honest.Add(randomBytes(t, object), ""))
			}
			data := randomBytes(t, 1<<20)
			dg := honest.Add(data, "")
			sent := make(chan struct{}, 1) // unread: the body's bytes are read through the cache
			hostile := OriginFunc(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
				return &oci.Response{Size: tc.announced, End: tc.announced, Body: &trickle{ctx: ctx, left: dripped, sent: sent}}, nil
			})
			c := newTestCache(t, &registries{by: map[string]Origin{"docker.io": honest, "evil.example": hostile}, calls: map[string]int{}},
				func(cfg *Config) { cfg.MemoryBytes, cfg.DiskBytes = 0, budget })
			for _, k := range keep {
				fillAndWait(t, c, blobReq(k))
			}
			evil := blobReq(oci.FromBytes([]byte("announced, never sent")))
			evil.Registry = "evil.example"
			obj, err := c.Get(t.Context(), evil)
			if err != nil {
				t.Fatal(err)
			}
			// The client reads some of what was dripped; the fill (or
			// the uncached stream) stays open, waiting for more.
			r, err := obj.Body(0, dripped/2)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if n, err := io.Copy(io.Discard, r); err != nil || n != dripped/2 {
				t.Fatalf("read %d of the dripped bytes: %v", n, err)
			}
			if _, n := diskUsage(c); n != kept {
				t.Errorf("%d of %d committed objects left after an announcement of %d bytes", n, kept, tc.announced)
			}
			if _, _, reserved := diskOf(c).Usage(); reserved > dripped {
				t.Errorf("%d bytes claimed for a fill that received %d", reserved, dripped)
			}

			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					obj, err := c.Get(t.Context(), blobReq(dg))
					if err != nil {
						t.Error(err)
						return
					}
					if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
						t.Errorf("a burst client read %d bytes, err %v", len(got), err)
					}
				})
			}
			wg.Wait()
			if n := honest.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
				t.Errorf("20 clients of a blob cost %d upstream GETs beside the dripping fill, want 1", n)
			}
			if n := testutil.ToFloat64(c.m.Uncached.WithLabelValues("budget")); n != tc.uncached {
				t.Errorf("uncached{budget} = %v, want %v", n, tc.uncached)
			}
		})
	}
}

// TestClaimsAsBytesArrive: a fill's claim on the disk budget follows the
// bytes it received, within one claim step, and committed content is
// evicted, least recently used first, only as those bytes arrive.
func TestClaimsAsBytesArrive(t *testing.T) {
	const budget, object = 4 << 20, 512 << 10
	o := origintest.New()
	var keep []oci.Digest
	for range 8 {
		keep = append(keep, o.Add(randomBytes(t, object), ""))
	}
	data := randomBytes(t, 2<<20)
	dg := o.Add(data, "")
	pace := make(chan int)
	paced := origintest.Pace(o, pace).Off()
	c := newTestCache(t, paced, func(cfg *Config) { cfg.MemoryBytes, cfg.DiskBytes, cfg.FillParallel = 0, budget, 1 })
	for _, k := range keep {
		fillAndWait(t, c, blobReq(k))
	}
	paced.Always()
	r := openBody(t, c, blobReq(dg))
	read := int64(0)
	for _, step := range []int64{256 << 10, 512 << 10, 512 << 10} {
		pace <- int(step)
		n, err := io.CopyN(io.Discard, r, step)
		if err != nil {
			t.Fatal(err)
		}
		read += n
		_, _, reserved := diskOf(c).Usage()
		used, objects := diskUsage(c)
		if reserved > read+64<<10 {
			t.Errorf("after %d bytes arrived, %d are claimed", read, reserved)
		}
		if used+reserved > budget {
			t.Errorf("after %d bytes: %d used and %d claimed exceed the budget of %d", read, used, reserved, budget)
		}
		if want := min(8, int((budget-read+object-1)/object)); objects < want-1 {
			t.Errorf("after %d bytes arrived, %d objects are left, want about %d", read, objects, want)
		}
	}
	close(pace)
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
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
