package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

// seedDisk writes n committed objects of a few bytes each straight into a
// disk tier layout, as a long-running cache would have left them.
func seedDisk(tb testing.TB, dir string, n int) {
	tb.Helper()
	for i := range n {
		data := []byte(fmt.Sprintf("object %d", i))
		dg := oci.FromBytes(data)
		h := dg.Hex()
		p := filepath.Join(dir, blobsDir, "sha256", h[:2], h)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p+metaSuffix, fmt.Appendf(nil, `{"size":%d}`, len(data)), 0o640); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestRestartIndexesEverything: every committed object is indexed on start.
func TestRestartIndexesEverything(t *testing.T) {
	dir := t.TempDir()
	seedDisk(t, dir, 2000)
	d, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	<-d.Loaded()
	if _, n, _ := d.Usage(); n != 2000 {
		t.Errorf("indexed %d objects, want 2000", n)
	}
}

// BenchmarkWarmRestart10k measures opening a disk tier that holds 10,000
// committed objects: the time a restarted cacheyd takes before it serves.
//
//	go test -run XXX -bench WarmRestart -benchtime 20x ./tier
func BenchmarkWarmRestart10k(b *testing.B) {
	dir := b.TempDir()
	seedDisk(b, dir, 10_000)
	b.ResetTimer()
	for b.Loop() {
		d, err := Open(Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		<-d.Loaded()
		if _, n, _ := d.Usage(); n != 10_000 {
			b.Fatalf("indexed %d", n)
		}
	}
}
