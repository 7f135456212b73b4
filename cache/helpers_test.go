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
)

func randomBytes(t testing.TB, n int) []byte { return origintest.RandomBytes(t, n) }

func newTestCache(t testing.TB, o Origin, mod func(*Config)) *Cache {
	t.Helper()
	cfg := Config{Dir: t.TempDir(), MemoryBytes: 64 << 20, MemoryMaxObject: 64 << 10, Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
	b, n, _ := c.disk.Usage()
	return b, n
}

// crash stops c as a crash would: its fills end, and no clean stop is
// recorded.
func crash(c *Cache) {
	c.cancel()
	c.wg.Wait()
	c.bg.Wait()
	c.mem.Close()
}
