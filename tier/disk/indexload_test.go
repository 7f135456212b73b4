package disk

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// The figures of a restart with many objects (bench/README.md, "Restart
// with many objects"): TestIndexLoadFigures builds (once) a cache directory
// of -index.n objects in the tier's own layout, then opens it in a fresh
// process, as a restarted cacheyd would, with the page cache warm (an open
// before warms it) and, with -index.drop (root), dropped first:
//
//	go test -run TestIndexLoadFigures -v ./tier/disk -index.n 100000 -index.dir /var/tmp/idx100k -index.drop
var (
	indexN    = flag.Int("index.n", 0, "objects in the cache directory TestIndexLoadFigures opens; 0 skips it")
	indexDir  = flag.String("index.dir", "", "the cache directory TestIndexLoadFigures builds once and reuses; empty: a temporary one")
	indexDrop = flag.Bool("index.drop", false, "also open with the page cache dropped (needs root)")
)

// figures is what one open of a cache directory measured.
type figures struct {
	Objects     int     `json:"objects"`
	ReadySec    float64 `json:"readySec"`    // until Open returned
	IndexedSec  float64 `json:"indexedSec"`  // until every object was indexed
	HeapPerObj  float64 `json:"heapPerObj"`  // live heap the index holds, per object
	RSSPerObj   float64 `json:"rssPerObj"`   // resident memory grown by the open, per object
	HeapTotalMB float64 `json:"heapTotalMB"` // live heap after the open
	RSSMB       float64 `json:"rssMB"`       // resident memory after the open
}

func TestIndexLoadFigures(t *testing.T) {
	if *indexN == 0 {
		t.Skip("no -index.n")
	}
	dir := *indexDir
	if dir == "" {
		dir = t.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, cleanMarker)); err != nil {
		start := time.Now()
		seedCommitted(t, dir, *indexN)
		t.Logf("built %d objects in %s", *indexN, time.Since(start).Round(time.Millisecond))
	}
	openInChild(t, dir) // warms the page cache: the directory may have left it since
	runs := []bool{false}
	if *indexDrop {
		runs = append(runs, true)
	}
	for _, drop := range runs {
		if drop {
			if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
				t.Fatalf("drop the page cache: %v", err)
			}
		}
		f := openInChild(t, dir)
		if f.Objects != *indexN {
			t.Errorf("indexed %d objects, want %d", f.Objects, *indexN)
		}
		t.Logf("objects=%d dropped=%v ready=%.3fs indexed=%.3fs heap=%.0f B/object rss=%.0f B/object (heap %.1f MB, rss %.1f MB)",
			f.Objects, drop, f.ReadySec, f.IndexedSec, f.HeapPerObj, f.RSSPerObj, f.HeapTotalMB, f.RSSMB)
	}
}

// openInChild opens dir in a fresh test process (TestIndexLoadChild), so
// that its memory is the index's alone, and returns what it measured. The
// open leaves a clean marker behind, as a clean stop would.
func openInChild(t *testing.T, dir string) figures {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestIndexLoadChild$", "-test.v")
	cmd.Env = append(os.Environ(), "CACHEYD_INDEX_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if js, ok := strings.CutPrefix(strings.TrimSpace(line), "FIGURES "); ok {
			var f figures
			if err := json.Unmarshal([]byte(js), &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("child printed no figures:\n%s", out)
	return figures{}
}

// TestIndexLoadChild is TestIndexLoadFigures' fresh process.
func TestIndexLoadChild(t *testing.T) {
	dir := os.Getenv("CACHEYD_INDEX_CHILD")
	if dir == "" {
		t.Skip("run by TestIndexLoadFigures")
	}
	heap0, rss0 := liveHeap(), rssBytes(t)
	start := time.Now()
	d, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ready := time.Since(start)
	waitIndexed(t, d)
	indexed := time.Since(start)
	heap1, rss1 := liveHeap(), rssBytes(t)
	_, n, _ := d.Usage()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	f := figures{
		Objects: n, ReadySec: ready.Seconds(), IndexedSec: indexed.Seconds(),
		HeapPerObj: float64(heap1-heap0) / float64(max(n, 1)), RSSPerObj: float64(rss1-rss0) / float64(max(n, 1)),
		HeapTotalMB: float64(heap1) / 1e6, RSSMB: float64(rss1) / 1e6,
	}
	b, _ := json.Marshal(f)
	fmt.Printf("FIGURES %s\n", b)
	runtime.KeepAlive(d)
}

// waitIndexed returns once d has indexed every object on disk.
func waitIndexed(t testing.TB, d *Disk) {
	t.Helper()
	<-d.Loaded()
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes is the process's resident memory (Linux; 0 elsewhere).
func rssBytes(t testing.TB) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	return 0
}

// seedCommitted writes n committed objects of a few bytes each into dir in
// the tier's own layout, with records as a commit writes them (their
// file's time included), and marks the stop clean: what a long-running
// cacheyd leaves behind. Their last uses are a second apart, oldest first.
func seedCommitted(tb testing.TB, dir string, n int) {
	tb.Helper()
	base := time.Now().Add(-time.Duration(n) * time.Second)
	for i := range n {
		data := fmt.Appendf(nil, "object %d", i)
		dg := oci.FromBytes(data)
		h := dg.Hex()
		p := filepath.Join(dir, blobsDir, "sha256", h[:2], h)
		if i < 256 {
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				tb.Fatal(err)
			}
		}
		err := os.WriteFile(p, data, 0o640)
		if os.IsNotExist(err) {
			err = os.MkdirAll(filepath.Dir(p), 0o750)
			if err == nil {
				err = os.WriteFile(p, data, 0o640)
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
		used := base.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(p, used, used); err != nil {
			tb.Fatal(err)
		}
		m := fmt.Appendf(nil, `{"size":%d,"modTime":%d}`, len(data), used.UnixNano())
		if err := os.WriteFile(p+metaSuffix, m, 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, cleanMarker), nil, 0o640); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkOpen100k measures a restart with 100,000 objects: until Open
// returns (ready) and until every object is indexed, and the heap the
// index holds per object.
//
//	go test -run XXX -bench Open100k -benchtime 3x ./tier/disk
func BenchmarkOpen100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	seedCommitted(b, dir, n)
	var ready, indexed time.Duration
	var perObj float64
	b.ResetTimer()
	for b.Loop() {
		heap0 := liveHeap()
		start := time.Now()
		d, err := Open(Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		ready += time.Since(start)
		waitIndexed(b, d)
		indexed += time.Since(start)
		perObj = float64(liveHeap()-heap0) / n
		if _, got, _ := d.Usage(); got != n {
			b.Fatalf("indexed %d", got)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(d)
	}
	b.ReportMetric(float64(ready.Milliseconds())/float64(b.N), "ms-ready/op")
	b.ReportMetric(float64(indexed.Milliseconds())/float64(b.N), "ms-indexed/op")
	b.ReportMetric(perObj, "heap-B/object")
}
