package tier

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// TestOverBudgetIsStreamedUncached: an object larger than the disk budget
// is still served, verified, and counted, but not kept.
func TestOverBudgetIsStreamedUncached(t *testing.T) {
	o := newFakeOrigin()
	data := randomBytes(t, 300<<10)
	dg := o.add(data, "")
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

// TestReservationsKeepTheBudget: fills in flight reserve their size before
// writing, so committed plus reserved bytes never exceed the budget.
func TestReservationsKeepTheBudget(t *testing.T) {
	d, err := openDisk(t.TempDir(), 1000, newTestMetrics())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.reserve(600); err != nil {
		t.Fatal(err)
	}
	if err := d.reserve(400); err != nil {
		t.Fatal(err)
	}
	if err := d.reserve(1001); !errors.Is(err, errNoRoom) {
		t.Fatalf("reserving more than the budget: %v, want errNoRoom", err)
	}
	d.unreserve(400)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reserved != 600 {
		t.Errorf("reserved = %d, want 600", d.reserved)
	}
}

// TestDiskFullIsStreamedUncached: on a file system without room, the pull
// is served straight from upstream and counted; nothing half-written stays.
// It mounts a 1 MiB tmpfs, which needs root: in CI that is a requirement.
func TestDiskFullIsStreamedUncached(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs (CI runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a small tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })

	o := newFakeOrigin()
	data := randomBytes(t, 2<<20)
	dg := o.add(data, "")
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
