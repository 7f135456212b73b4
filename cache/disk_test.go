package cache

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestWrongSizeForgottenOnRestart: a committed file that is shorter or
// longer than its record (truncated, emptied, appended to), or has no
// record, is removed on start and fetched again, never served as whole.
func TestWrongSizeForgottenOnRestart(t *testing.T) {
	o := origintest.New()
	var dgs []oci.Digest
	datas := map[oci.Digest][]byte{}
	for range 4 {
		data := randomBytes(t, 100<<10)
		dg := o.Add(data, "")
		dgs = append(dgs, dg)
		datas[dg] = data
	}
	dir := t.TempDir()
	c := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0 })
	for _, dg := range dgs {
		fillAndWait(t, c, blobReq(dg))
	}
	stopCleanly(c)
	damage := []func(p string) error{
		func(p string) error { return os.Truncate(p, 1000) },
		func(p string) error { return os.Truncate(p, 0) },
		func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte("more"))
			return errors.Join(err, f.Close())
		},
		func(p string) error { return os.Remove(p + ".meta") },
	}
	for i, dg := range dgs {
		if err := damage[i](diskOf(c).Path(dg)); err != nil {
			t.Fatal(err)
		}
	}
	c2 := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0 })
	if _, n := diskUsage(c2); n != 0 {
		t.Errorf("%d damaged objects indexed after a restart, want 0", n)
	}
	for _, dg := range dgs {
		if got := fillAndWait(t, c2, blobReq(dg)); !bytes.Equal(got, datas[dg]) {
			t.Errorf("%s after a restart: %d bytes, not the content", dg.Short(), len(got))
		}
		if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
			t.Errorf("%s: %d upstream GETs, want 2 (fetched again)", dg.Short(), n)
		}
	}
}

// TestUncleanStopVerifiesBeforeServing: after a stop without Close (a crash,
// kill -9, a power loss), content of the right size but the wrong bytes is
// never served as whole: a whole read fails before its last byte, a range
// fails before its first, a small object is a miss; each is removed and
// fetched again. Content that is right is served and trusted again.
func TestUncleanStopVerifiesBeforeServing(t *testing.T) {
	wrongBytesWhileStopped(t, crash, false)
}

// TestOverwrittenWhileStoppedVerifiesBeforeServing: after a clean stop,
// content overwritten in place at its own size (a stray dd conv=notrunc,
// an operator's mistake) is treated as after an unclean stop: never served
// as whole, removed and fetched again. Content nothing changed is served
// at once as a plain file, without being hashed again.
func TestOverwrittenWhileStoppedVerifiesBeforeServing(t *testing.T) {
	wrongBytesWhileStopped(t, stopCleanly, true)
}

// wrongBytesWhileStopped fills four objects, stops the cache with stop,
// overwrites three of them with as many wrong bytes, starts it again and
// checks that none of the three is served whole, that each is fetched
// again, and that the fourth is served right: at once as a plain file when
// trusted (a clean stop), else after a check.
func wrongBytesWhileStopped(t *testing.T, stop func(*Cache), trusted bool) {
	o := origintest.New()
	large, ranged, small, good := randomBytes(t, 256<<10), randomBytes(t, 256<<10), randomBytes(t, 4<<10), randomBytes(t, 256<<10)
	dl, dr, ds, dgood := o.Add(large, ""), o.Add(ranged, ""), o.Add(small, ""), o.Add(good, "")
	dir := t.TempDir()
	m := newTestMetrics()
	cfg := func(cfg *Config) { cfg.Dir = dir; cfg.MemoryMaxObject = 64 << 10; cfg.Metrics = m }
	c := newTestCache(t, o, cfg)
	for _, dg := range []oci.Digest{dl, dr, ds, dgood} {
		fillAndWait(t, c, blobReq(dg))
	}
	stop(c)
	for _, dg := range []oci.Digest{dl, dr, ds} {
		overwriteLater(t, diskOf(c).Path(dg))
	}

	c2 := newTestCache(t, o, cfg)
	// A whole read: everything but the last byte, then an error.
	obj, err := c2.Get(t.Context(), blobReq(dl))
	if err != nil || obj.Source != SourceDisk {
		t.Fatalf("large object after the stop: %v", err)
	}
	got, err := readAll(t, obj)
	if err == nil || len(got) >= len(large) {
		t.Errorf("corrupt object read whole: %d bytes, err %v", len(got), err)
	}
	// A range: nothing.
	obj, err = c2.Get(t.Context(), blobReq(dr))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := obj.Body(1000, 1000); err == nil {
		r.Close()
		t.Error("a range of a corrupt object was served")
	}
	obj.Close()
	// Each is gone and comes back right from upstream; the small one at once.
	for dg, want := range map[oci.Digest][]byte{dl: large, dr: ranged, ds: small} {
		if got := fillAndWait(t, c2, blobReq(dg)); !bytes.Equal(got, want) {
			t.Errorf("%s after its removal: not the content", dg.Short())
		}
		if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
			t.Errorf("%s: %d upstream GETs, want 2", dg.Short(), n)
		}
	}
	// The right one is served, checked unless trusted, and then sent as a
	// plain file.
	for i := range 2 {
		obj, err := c2.Get(t.Context(), blobReq(dgood))
		if err != nil || obj.Source != SourceDisk {
			t.Fatalf("good object: %v", err)
		}
		r, err := obj.Body(0, -1)
		if err != nil {
			t.Fatal(err)
		}
		_, isFile := r.(*os.File)
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, good) {
			t.Fatalf("good object read %d: %v", i, err)
		}
		if want := trusted || i == 1; isFile != want {
			t.Errorf("read %d as a plain file = %v, want %v", i, isFile, want)
		}
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dgood)); n != 1 {
		t.Errorf("good object: %d upstream GETs, want 1", n)
	}
	hashed := map[string]int{}
	for _, outcome := range []string{"ok", "mismatch"} {
		hashed[outcome] = int(testutil.ToFloat64(m.DiskVerified.WithLabelValues(outcome)))
	}
	want := map[string]int{"ok": 1, "mismatch": 3}
	if trusted {
		want["ok"] = 0 // the good object was never hashed again
	}
	if diff := cmp.Diff(want, hashed); diff != "" {
		t.Errorf("objects hashed again by outcome (-want +got):\n%s", diff)
	}
}

// overwriteLater fills the file at p with as many wrong bytes as it holds,
// in place, and dates the write a second after the file's last one: an
// overwrite while cacheyd is stopped comes later than the commit, while
// the kernel stamps writes with a clock that may tick only every few
// milliseconds.
func overwriteLater(t *testing.T, p string) {
	t.Helper()
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{'x'}, int(info.Size())), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, time.Time{}, info.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
}
