package cache

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier/disk"
	"github.com/cacheyd/cacheyd/tier/memory"
)

func randomBytes(t testing.TB, n int) []byte { return origintest.RandomBytes(t, n) }

func newTestCache(t testing.TB, o Origin, mod func(*Config)) *Cache {
	t.Helper()
	cfg := Config{Dir: t.TempDir(), MemoryBytes: 64 << 20, MemoryMaxObject: 64 << 10, Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg, o, newTestTiers(t, &cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newTestTiers opens the default tiers cfg describes, as internal/app
// does: a memory tier when cfg.MemoryBytes is above zero, and the disk tier
// in cfg.Dir, counting into cfg.Metrics (set here when nil, for the cache
// to share). They are closed, memory then disk (a clean stop), when tb
// ends, after what tb.Cleanup is given later: the cache over them first.
func newTestTiers(tb testing.TB, cfg *Config) Tiers {
	tb.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	mem, err := memory.New(memory.Config{Bytes: cfg.MemoryBytes, MaxObject: cfg.MemoryMaxObject, Metrics: cfg.Metrics})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := disk.Open(disk.Config{Dir: cfg.Dir, Budget: cfg.DiskBytes, Metrics: cfg.Metrics, Logger: cfg.Logger})
	if err != nil {
		mem.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { closeTiers(mem, d) })
	<-d.Loaded() // evictions wait for the whole index
	tiers := Tiers{Disk: DiskOf(d)}
	if mem != nil {
		tiers.Memory = mem
	}
	return tiers
}

// OpenTestTiers is newTestTiers for the package's external tests.
func OpenTestTiers(tb testing.TB, cfg *Config) Tiers { return newTestTiers(tb, cfg) }

// closeTiers closes the default tiers as cacheyd does once its cache is
// closed: memory, then disk, which records a clean stop. Closing them again
// does nothing more.
func closeTiers(mem *memory.Memory, d *disk.Disk) {
	mem.Close()
	_ = d.Close()
}

// memOf is c's memory tier as tier/memory's own type; nil when it has
// none, which holds nothing.
func memOf(c *Cache) *memory.Memory {
	m, _ := c.mem.(*memory.Memory)
	return m
}

// diskOf is c's disk tier as tier/disk's own type.
func diskOf(c *Cache) *disk.Disk {
	return c.disk.(diskFiles[*disk.File, *disk.Pending]).DiskFiles.(*disk.Disk)
}

// stopCleanly closes c and then its tiers, as cacheyd stops: the disk records a
// clean stop, and another cache may open the same directory.
func stopCleanly(c *Cache) {
	c.Close()
	closeTiers(memOf(c), diskOf(c))
}

func blobReq(dg oci.Digest) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
}

// openBody gets req from c and takes its whole body, which the test closes
// when it ends.
func openBody(t testing.TB, c *Cache, req *oci.Request) io.ReadCloser {
	t.Helper()
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := obj.Body(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
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

func newTestMetrics() *metrics.Metrics { return metrics.New(nil) }

// held reports whether the disk tier holds dg.
func held(c *Cache, dg oci.Digest) bool {
	_, err := c.disk.Stat(context.Background(), dg)
	return err == nil
}

// diskUsage reports the bytes and objects the disk tier holds.
func diskUsage(c *Cache) (int64, int) {
	b, n, _ := diskOf(c).Usage()
	return b, n
}

// crash stops c as a crash would: its fills end, and no clean stop is
// recorded.
func crash(c *Cache) {
	c.cancel()
	c.wg.Wait()
	c.bg.Wait()
	memOf(c).Close()
}
