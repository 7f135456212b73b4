package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// hashed counts the objects d has hashed again since it was opened, by
// outcome (ok, mismatch).
func hashed(d *Disk, outcome string) int {
	return int(testutil.ToFloat64(d.m.DiskVerified.WithLabelValues(outcome)))
}

// putObject commits data to d and returns its digest.
func putObject(t *testing.T, d *Disk, data []byte) oci.Digest {
	t.Helper()
	e := tier.Entry{Digest: oci.FromBytes(data), Size: int64(len(data))}
	if _, err := d.Put(t.Context(), e, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return e.Digest
}

// stopCleanly closes d as a clean stop does.
func stopCleanly(t *testing.T, d *Disk) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// overwriteInPlace writes b over the start of the file at p without
// truncating it, as dd conv=notrunc does, and dates the write a second
// after the file's last one: a write while cacheyd is stopped comes later
// than its commit, while the kernel stamps writes with a clock that may
// tick only every few milliseconds.
func overwriteInPlace(t *testing.T, p string, b []byte) {
	t.Helper()
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	later := before.ModTime().Add(time.Second)
	if err := os.Chtimes(p, time.Time{}, later); err != nil {
		t.Fatal(err)
	}
}

// readWhole reads f whole through Section, as a server sends it.
func readWhole(f *File) ([]byte, error) {
	r, err := f.Section(context.Background(), 0, f.Size())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestOverwrittenWhileStoppedIsNeverServed: after a clean stop, a
// committed file overwritten in place at its own size (a stray dd
// conv=notrunc, an operator's mistake) is checked before or while it is
// first served, as after an unclean stop: a whole read fails before its
// last byte, a window and ReadAt before their first, each with a
// mismatch, and the object is removed, to be fetched again.
func TestOverwrittenWhileStoppedIsNeverServed(t *testing.T) {
	tests := []struct {
		name string
		read func(f *File) ([]byte, error)
	}{
		{"whole read", readWhole},
		{"window", func(f *File) ([]byte, error) {
			r, err := f.Section(context.Background(), 1000, 1000)
			if err != nil {
				return nil, err
			}
			defer r.Close()
			return io.ReadAll(r)
		}},
		{"ReadAt", func(f *File) ([]byte, error) {
			b := make([]byte, f.Size())
			n, err := f.ReadAt(b, 0)
			return b[:n], err
		}},
	}
	for _, tt := range tests {
		for _, whole := range []bool{true, false} {
			name := tt.name + map[bool]string{true: ", every byte changed", false: ", one byte changed"}[whole]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				d := newTestDisk(t, dir, 0)
				data := randomBytes(t, 64<<10)
				dg := putObject(t, d, data)
				stopCleanly(t, d)
				bad := bytes.Repeat([]byte{'x'}, len(data))
				if !whole {
					bad = append([]byte(nil), data...)
					bad[len(bad)/2] ^= 0xff
				}
				overwriteInPlace(t, d.Path(dg), bad)

				d = newTestDisk(t, dir, 0)
				f, _, err := d.OpenFile(dg)
				if err != nil {
					t.Fatalf("OpenFile: %v", err)
				}
				got, err := tt.read(f)
				f.Close()
				// A whole read ends as a digest check does, a window and
				// ReadAt as the tier's own check.
				if !errors.Is(err, tier.ErrMismatch) && !errors.Is(err, oci.ErrDigestMismatch) {
					t.Errorf("read = %d bytes, %v; want a mismatch", len(got), err)
				}
				if len(got) >= len(data) {
					t.Errorf("read %d bytes of %d: served whole", len(got), len(data))
				}
				if _, err := d.Stat(t.Context(), dg); !errors.Is(err, tier.ErrNotFound) {
					t.Errorf("Stat after the mismatch = %v, want ErrNotFound", err)
				}
				if _, err := os.Stat(d.Path(dg)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the overwritten file is still there: %v", err)
				}
				if n := hashed(d, "mismatch"); n != 1 {
					t.Errorf("%d mismatches counted, want 1", n)
				}
			})
		}
	}
}

// TestUntouchedAcrossACleanStopIsTrusted: after a clean stop, a file that
// nothing changed is served as it was before the stop, without a check:
// a whole read is the file itself (sendfile), and nothing is hashed. Nor
// do a use recorded on the file or a record rewritten for a new source
// count as a change.
func TestUntouchedAcrossACleanStopIsTrusted(t *testing.T) {
	dir := t.TempDir()
	d := newTestDisk(t, dir, 0)
	data := randomBytes(t, 64<<10)
	dg := putObject(t, d, data)
	// The same content again, from a new source: only its record changes.
	again := tier.Entry{Digest: dg, Size: int64(len(data)), Public: []string{"docker.io/library/app"}}
	if e, err := d.Put(t.Context(), again, bytes.NewReader(data)); err != nil || len(e.Public) != 1 {
		t.Fatalf("Put again = %+v, %v; want the new source recorded", e, err)
	}
	// A use late enough to be recorded on the file.
	timeNow = func() time.Time { return time.Now().Add(2 * touchEvery) }
	t.Cleanup(func() { timeNow = time.Now })
	if _, err := d.Stat(t.Context(), dg); err != nil {
		t.Fatal(err)
	}
	stopCleanly(t, d)

	d = newTestDisk(t, dir, 0)
	f, _, err := d.OpenFile(dg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := f.Section(t.Context(), 0, f.Size())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(*os.File); !ok {
		t.Errorf("whole read of an untouched file is a %T, want the *os.File", r)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, %v; want the content", len(got), err)
	}
	b := make([]byte, 100)
	if _, err := f.ReadAt(b, 1000); err != nil || !bytes.Equal(b, data[1000:1100]) {
		t.Errorf("ReadAt: %v", err)
	}
	if n := hashed(d, "ok") + hashed(d, "mismatch"); n != 0 {
		t.Errorf("%d objects hashed again, want 0", n)
	}
}

// TestUnvouchedFileIsCheckedOnce: a file its record cannot vouch for after
// a clean stop, a record of an earlier version (no time) or a file whose
// time alone changed (touch), is checked when first served, by a whole
// read or by ReadAt, and served since it is right; the check writes the
// file's time into its record, so that after the next clean stop the file
// is trusted without a check.
func TestUnvouchedFileIsCheckedOnce(t *testing.T) {
	changes := []struct {
		name   string
		change func(t *testing.T, p string, size int)
	}{
		{"record of an earlier version", func(t *testing.T, p string, size int) {
			if err := os.WriteFile(p+metaSuffix, fmt.Appendf(nil, `{"size":%d}`, size), 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{"file's time changed", func(t *testing.T, p string, _ int) {
			if err := os.Chtimes(p, time.Time{}, time.Now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	reads := []struct {
		name string
		read func(f *File) ([]byte, error)
	}{
		{"whole read", readWhole},
		{"ReadAt", func(f *File) ([]byte, error) {
			b := make([]byte, f.Size())
			n, err := f.ReadAt(b, 0)
			return b[:n], err
		}},
	}
	for _, c := range changes {
		for _, rd := range reads {
			t.Run(c.name+", "+rd.name, func(t *testing.T) {
				dir := t.TempDir()
				d := newTestDisk(t, dir, 0)
				data := randomBytes(t, 64<<10)
				dg := putObject(t, d, data)
				stopCleanly(t, d)
				c.change(t, d.Path(dg), len(data))

				d = newTestDisk(t, dir, 0)
				f, _, err := d.OpenFile(dg)
				if err != nil {
					t.Fatal(err)
				}
				got, err := rd.read(f)
				f.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("first read: %d bytes, %v; want the content", len(got), err)
				}
				if n := hashed(d, "ok"); n != 1 {
					t.Errorf("first start: %d objects checked, want 1", n)
				}
				stopCleanly(t, d)

				d = newTestDisk(t, dir, 0)
				f, _, err = d.OpenFile(dg)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				got, err = readWhole(f)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("after the next stop: %d bytes, %v; want the content", len(got), err)
				}
				if n := hashed(d, "ok") + hashed(d, "mismatch"); n != 0 {
					t.Errorf("after the next stop: %d objects hashed again, want 0", n)
				}
			})
		}
	}
}
