package tier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

// TestCommitIsDurable: a commit syncs the pending file's bytes before it is
// renamed to its digest's name, and the directory after the rename, so that
// a power loss never leaves a short file under a digest's name.
func TestCommitIsDurable(t *testing.T) {
	d, err := openDisk(t.TempDir(), 0, newTestMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 10<<10)
	dg := oci.FromBytes(data)
	final := d.path(dg)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	var fileSynced, dirSynced bool
	d.syncFile = func(f *os.File) error {
		if filepath.Dir(f.Name()) == filepath.Join(d.dir, pendingDir) {
			if exists(final) {
				t.Error("content synced after its rename")
			}
			fileSynced = true
		}
		return f.Sync()
	}
	d.syncDir = func(dir string) error {
		if dir == filepath.Dir(final) {
			if !exists(final) || !exists(final+metaSuffix) {
				t.Error("directory synced before the renames")
			}
			dirSynced = true
		}
		return syncDirectory(dir)
	}
	f, err := d.createPending()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := d.commit(f, commitReq{digest: dg, size: int64(len(data)), source: "r/x"}, 0); err != nil {
		t.Fatal(err)
	}
	if !fileSynced {
		t.Error("the pending file was not synced before its rename")
	}
	if !dirSynced {
		t.Error("the directory was not synced after the rename")
	}
	if got, err := os.ReadFile(final); err != nil || !bytes.Equal(got, data) {
		t.Errorf("committed file: %v", err)
	}
}

// TestWrongSizeForgottenOnRestart: a committed file that is shorter or
// longer than its record (truncated, emptied, appended to), or has no
// record, is removed on start and fetched again, never served as whole.
func TestWrongSizeForgottenOnRestart(t *testing.T) {
	o := newFakeOrigin()
	var dgs []oci.Digest
	datas := map[oci.Digest][]byte{}
	for range 4 {
		data := randomBytes(t, 100<<10)
		dg := o.add(data, "")
		dgs = append(dgs, dg)
		datas[dg] = data
	}
	dir := t.TempDir()
	c := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0 })
	for _, dg := range dgs {
		fillAndWait(t, c, blobReq(dg))
	}
	c.Close()
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
		func(p string) error { return os.Remove(p + metaSuffix) },
	}
	for i, dg := range dgs {
		if err := damage[i](c.disk.path(dg)); err != nil {
			t.Fatal(err)
		}
	}
	c2 := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir; cfg.MemoryBytes = 0 })
	if _, n := c2.disk.usage(); n != 0 {
		t.Errorf("%d damaged objects indexed after a restart, want 0", n)
	}
	for _, dg := range dgs {
		if got := fillAndWait(t, c2, blobReq(dg)); !bytes.Equal(got, datas[dg]) {
			t.Errorf("%s after a restart: %d bytes, not the content", dg.Short(), len(got))
		}
		if n := o.count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
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
	o := newFakeOrigin()
	large, ranged, small, good := randomBytes(t, 256<<10), randomBytes(t, 256<<10), randomBytes(t, 4<<10), randomBytes(t, 256<<10)
	dl, dr, ds, dgood := o.add(large, ""), o.add(ranged, ""), o.add(small, ""), o.add(good, "")
	dir := t.TempDir()
	cfg := func(cfg *Config) { cfg.Dir = dir; cfg.MemoryMaxObject = 64 << 10 }
	c := newTestCache(t, o, cfg)
	for _, dg := range []oci.Digest{dl, dr, ds, dgood} {
		fillAndWait(t, c, blobReq(dg))
	}
	c.Close()
	if err := os.Remove(filepath.Join(dir, cleanMarker)); err != nil {
		t.Fatalf("no clean marker after Close: %v", err)
	}
	for _, dg := range []oci.Digest{dl, dr, ds} {
		p := c.disk.path(dg)
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, int(info.Size())), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	c2 := newTestCache(t, o, cfg)
	// A whole read: everything but the last byte, then an error.
	obj, err := c2.Get(t.Context(), blobReq(dl))
	if err != nil || obj.Source != SourceDisk {
		t.Fatalf("large object after an unclean stop: %v", err)
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
		if n := o.count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
			t.Errorf("%s: %d upstream GETs, want 2", dg.Short(), n)
		}
	}
	// The right one is served, checked, and then sent as a plain file.
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
		if isFile != (i == 1) {
			t.Errorf("read %d as a plain file = %v: want verified on the first, trusted on the second", i, isFile)
		}
	}
	if n := o.count(http.MethodGet, oci.KindBlob, string(dgood)); n != 1 {
		t.Errorf("good object: %d upstream GETs, want 1", n)
	}
}

// BenchmarkCommit measures a commit with its syncs and without them, for a
// manifest-sized and a layer-sized object: the price of durability.
//
//	go test -run XXX -bench Commit -benchtime 200x ./tier
func BenchmarkCommit(b *testing.B) {
	for _, size := range []int{4 << 10, 16 << 20} {
		for _, durable := range []bool{true, false} {
			b.Run(fmt.Sprintf("size=%d/durable=%v", size, durable), func(b *testing.B) {
				d, err := openDisk(b.TempDir(), 0, newTestMetrics(), nil)
				if err != nil {
					b.Fatal(err)
				}
				if !durable {
					d.syncFile = func(*os.File) error { return nil }
					d.syncDir = func(string) error { return nil }
				}
				data := randomBytes(b, size)
				b.SetBytes(int64(size))
				for i := 0; b.Loop(); i++ {
					binary.BigEndian.PutUint64(data, uint64(i)) // a new digest each time
					f, err := d.createPending()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.Write(data); err != nil {
						b.Fatal(err)
					}
					if _, err := d.commit(f, commitReq{digest: oci.FromBytes(data), size: int64(size)}, 0); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
		}
	}
}
