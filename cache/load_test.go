package cache

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier/disk"
)

// TestServedFromDiskWhileIndexing: after a restart, while the disk tier
// has not indexed anything yet, every object it holds is answered from
// disk, whole and right, and upstream is asked nothing more.
func TestServedFromDiskWhileIndexing(t *testing.T) {
	o := origintest.New()
	datas := map[oci.Digest][]byte{}
	for range 5 {
		data := randomBytes(t, 40<<10)
		datas[o.Add(data, "")] = data
	}
	dir := t.TempDir()
	c := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0 })
	for dg := range datas {
		fillAndWait(t, c, blobReq(dg))
	}
	stopCleanly(c)

	gate := make(chan struct{})
	cfg := Config{Dir: dir, Logger: quietLogger(), Metrics: newTestMetrics()}
	d, err := disk.Open(disk.Config{Dir: dir, Metrics: cfg.Metrics, Logger: cfg.Logger, LoadGate: func() { <-gate }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	t.Cleanup(func() { close(gate) }) // runs first: the load ends, then Close
	c2, err := New(cfg, o, Tiers{Disk: DiskOf(d)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	if _, n, _ := d.Usage(); n != 0 {
		t.Fatalf("%d objects indexed before the load ran, want 0", n)
	}
	for dg, data := range datas {
		if got := fillAndWait(t, c2, blobReq(dg)); !bytes.Equal(got, data) {
			t.Errorf("%s while indexing: %d bytes, not the content", dg.Short(), len(got))
		}
		if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
			t.Errorf("%s: %d upstream GETs, want 1 (the first fill's only)", dg.Short(), n)
		}
	}
	if _, n, _ := d.Usage(); n != len(datas) {
		t.Errorf("%d objects indexed after answering, want %d", n, len(datas))
	}
}
