package disk

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// TestUseSurvivesARestart: a hit records its use on the file (at most once
// per touchEvery), so that after a restart the least recently used object,
// not the oldest commit, is evicted first.
func TestUseSurvivesARestart(t *testing.T) {
	clock := time.Now().Add(time.Hour) // ahead of the file system's own times
	timeNow = func() time.Time { return clock }
	t.Cleanup(func() { timeNow = time.Now })

	dir := t.TempDir()
	d := newTestDisk(t, dir, 0)
	var dgs []oci.Digest
	for i := range 3 {
		data := bytes.Repeat([]byte{byte('a' + i)}, 1000)
		e := tier.Entry{Digest: oci.FromBytes(data), Size: int64(len(data))}
		if _, err := d.Put(t.Context(), e, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		dgs = append(dgs, e.Digest)
	}
	// Commit times one second apart, oldest first, as a file system with a
	// coarse clock might not give them.
	for i, dg := range dgs {
		at := time.Now().Add(time.Duration(i-10) * time.Second)
		if err := os.Chtimes(d.Path(dg), at, at); err != nil {
			t.Fatal(err)
		}
	}
	// The first commit is used again, late enough to be recorded.
	clock = clock.Add(2 * touchEvery)
	if _, err := d.Stat(t.Context(), dgs[0]); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// A budget for two: one must go, and it is the least recently used.
	d = newTestDisk(t, dir, 2000)
	for i, want := range []bool{true, false, true} {
		if _, err := d.Stat(t.Context(), dgs[i]); (err == nil) != want {
			t.Errorf("object %d kept = %v after a restart, want %v", i, err == nil, want)
		}
	}
}
