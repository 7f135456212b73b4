package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// openHeld opens dir with its load held before its first batch until the
// returned release is called (also when the test ends).
func openHeld(t *testing.T, cfg Config) (*Disk, func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	cfg.LoadGate = func() { <-gate }
	d, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { release(); _ = d.Close() })
	return d, release
}

// seeded is object i as seedCommitted wrote it.
func seeded(i int) ([]byte, oci.Digest) {
	data := fmt.Appendf(nil, "object %d", i)
	return data, oci.FromBytes(data)
}

// TestServedWhileLoading: Open returns before the load has indexed
// anything, and every object on disk is served meanwhile, whole and right,
// counted once when the load reaches it too.
func TestServedWhileLoading(t *testing.T) {
	const n = 300
	dir := t.TempDir()
	seedCommitted(t, dir, n)
	m := metrics.New(nil)
	d, release := openHeld(t, Config{Dir: dir, Metrics: m})
	if got := testutil.ToFloat64(m.DiskIndexLoading); got != 1 {
		t.Errorf("cacheyd_disk_index_loading = %v while loading, want 1", got)
	}
	var want int64
	for i := range n {
		data, dg := seeded(i)
		want += int64(len(data))
		if i%3 != 0 {
			continue
		}
		c, e, err := d.Open(t.Context(), dg)
		if err != nil {
			t.Fatalf("object %d while loading: %v", i, err)
		}
		got, err := io.ReadAll(io.NewSectionReader(c, 0, c.Size()))
		c.Close()
		if err != nil || !bytes.Equal(got, data) || e.Size != int64(len(data)) {
			t.Fatalf("object %d while loading: %q, %v", i, got, err)
		}
	}
	if _, objects, _ := d.Usage(); objects != n/3 {
		t.Errorf("%d objects indexed before the load ran, want the %d asked for", objects, n/3)
	}
	release()
	<-d.Loaded()
	used, objects, _ := d.Usage()
	if objects != n || used != want {
		t.Errorf("after the load: %d objects of %d bytes, want %d of %d", objects, used, n, want)
	}
	if got := testutil.ToFloat64(m.DiskIndexLoading); got != 0 {
		t.Errorf("cacheyd_disk_index_loading = %v after the load, want 0", got)
	}
	if got := testutil.ToFloat64(m.DiskIndexObjects); got != n {
		t.Errorf("cacheyd_disk_index_objects = %v after the load, want %d", got, n)
	}
}

// TestDamagedFoundBeforeTheLoad: a file cut short (or without its record)
// found by a request before the load reaches it is a miss, removed, and
// never served; after an unclean stop one of the right size but the wrong
// bytes is served only through a check, and a whole read of it fails
// before its last byte.
func TestDamagedFoundBeforeTheLoad(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			dir := t.TempDir()
			seedCommitted(t, dir, 20)
			if !clean {
				if err := os.Remove(filepath.Join(dir, cleanMarker)); err != nil {
					t.Fatal(err)
				}
			}
			paths := map[int]string{}
			for i := range 3 {
				_, dg := seeded(i)
				paths[i] = filepath.Join(dir, blobsDir, "sha256", dg.Hex()[:2], dg.Hex())
			}
			if err := os.Truncate(paths[0], 3); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(paths[1] + metaSuffix); err != nil {
				t.Fatal(err)
			}
			data, _ := seeded(2)
			if err := os.WriteFile(paths[2], bytes.Repeat([]byte("x"), len(data)), 0o640); err != nil {
				t.Fatal(err)
			}
			d, release := openHeld(t, Config{Dir: dir})
			for i := range 2 {
				_, dg := seeded(i)
				if _, _, err := d.Open(t.Context(), dg); !tierNotFound(err) {
					t.Errorf("damaged object %d while loading: %v, want not found", i, err)
				}
				if _, err := os.Stat(paths[i]); !os.IsNotExist(err) {
					t.Errorf("damaged object %d still on disk: %v", i, err)
				}
			}
			// Rewritten at its size: its time is not its record's, so it
			// is checked whether the stop was clean or not.
			_, dg := seeded(2)
			c, _, err := d.Open(t.Context(), dg)
			if err != nil {
				t.Fatalf("object 2: %v", err)
			}
			r, err := c.(*File).Section(t.Context(), 0, c.Size())
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err == nil || len(got) == len(data) {
				t.Errorf("a whole read of wrong bytes: %d of %d bytes, err %v; want it cut before its last byte", len(got), len(data), err)
			}
			release()
			<-d.Loaded()
			if _, objects, _ := d.Usage(); objects != 17 {
				t.Errorf("%d objects after the load, want 17", objects)
			}
		})
	}
}

func tierNotFound(err error) bool { return err != nil && errors.Is(err, tier.ErrNotFound) }

// TestBudgetHoldsUnderFillsDuringLoad: fills committed while the load runs
// are counted; once it is done, what the tier holds fits the budget, the
// fills (the most recent) are all kept and the least recently used of what
// the load found are the ones evicted, exactly.
func TestBudgetHoldsUnderFillsDuringLoad(t *testing.T) {
	const n, fills, fillSize, budget = 300, 20, 50, 2000
	dir := t.TempDir()
	seedCommitted(t, dir, n)
	m := metrics.New(nil)
	d, release := openHeld(t, Config{Dir: dir, Budget: budget, Metrics: m})
	var wg sync.WaitGroup
	errs := make(chan error, fills)
	var dgs []oci.Digest
	for i := range fills {
		data := bytes.Repeat([]byte{byte('A' + i)}, fillSize)
		e := tier.Entry{Digest: oci.FromBytes(data), Size: fillSize}
		dgs = append(dgs, e.Digest)
		wg.Go(func() {
			_, err := d.Put(t.Context(), e, bytes.NewReader(data))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a fill during the load: %v", err)
		}
	}
	if used, objects, _ := d.Usage(); used != fills*fillSize || objects != fills {
		t.Errorf("during the load: %d objects of %d bytes, want the %d fills of %d", objects, used, fills, fills*fillSize)
	}
	release()
	<-d.Loaded()
	// The seeded objects kept are the most recently used that fit beside
	// the fills.
	room, kept := int64(budget-fills*fillSize), 0
	for i := n - 1; i >= 0; i-- {
		data, _ := seeded(i)
		if room < int64(len(data)) {
			break
		}
		room -= int64(len(data))
		kept++
	}
	used, objects, reserved := d.Usage()
	if used+reserved > budget || objects != fills+kept {
		t.Errorf("after the load: %d objects, %d bytes used and %d claimed; want %d objects within %d", objects, used, reserved, fills+kept, budget)
	}
	if got := testutil.ToFloat64(m.DiskEvictions); got != float64(n-kept) {
		t.Errorf("%v evictions, want %d", got, n-kept)
	}
	for _, dg := range dgs {
		if _, err := d.Stat(t.Context(), dg); err != nil {
			t.Errorf("a fill was evicted: %v", err)
		}
	}
	for i := range n {
		_, dg := seeded(i)
		if _, err := d.Stat(t.Context(), dg); (err == nil) != (i >= n-kept) {
			t.Errorf("object %d of %d kept = %v, want %v", i, n, err == nil, i >= n-kept)
		}
	}
}

// TestRequestsRaceTheLoad: requests for every object, while the loaders
// run, index each object once: the count and the bytes are exact.
func TestRequestsRaceTheLoad(t *testing.T) {
	const n, clients = 2000, 4
	dir := t.TempDir()
	seedCommitted(t, dir, n)
	d, release := openHeld(t, Config{Dir: dir})
	var want int64
	for i := range n {
		data, _ := seeded(i)
		want += int64(len(data))
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range n {
				_, dg := seeded((i + c*n/clients) % n)
				if _, err := d.Stat(t.Context(), dg); err != nil {
					t.Errorf("object %d: %v", i, err)
				}
			}
		})
	}
	release()
	wg.Wait()
	<-d.Loaded()
	if used, objects, _ := d.Usage(); objects != n || used != want {
		t.Errorf("%d objects of %d bytes, want %d of %d", objects, used, n, want)
	}
}
