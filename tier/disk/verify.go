package disk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// After an unclean stop (kill -9, a crash, a power loss) the disk is not
// trusted blindly: an object is indexed only if its size matches its record,
// and before it is first served its digest is checked again. A whole read
// of an object is hashed while it streams, and its last byte is held until
// the digest matched; a window, or a read at an offset (ReadAt), waits for a
// check of the whole file first. An object that fails is removed, to be
// fetched again; it is never served as whole.
//
// After a clean stop the same goes for an object whose file is not the one
// committed. Its record holds the file's modification time as the commit
// left it (after the last write and its sync; a rename keeps it), and any
// write to the file (a stray dd conv=notrunc, an operator's mistake) sets
// it anew; cacheyd itself records uses in the access time only (disk.go).
// A file whose time differs from its record, or whose record is of an
// earlier version, which held no time, is checked before or while it is
// first served, as after an unclean stop. A check that passes writes the
// file's time into its record, so that such a file costs one check, not
// one per start. What the time cannot tell is a change below the file
// system (bit rot) or one whose writer put the old time back (touch -r,
// cp -p): only hashing finds those, and only an unclean stop makes cacheyd
// hash everything.

// File is content held by the disk tier: a tier.Content. Section gives a
// reader of a window that keeps sendfile reachable.
type File struct {
	f        *os.File
	d        *Disk
	e        tier.Entry
	verified bool // false: not checked since an unclean stop
}

// Size is the object's size.
func (f *File) Size() int64 { return f.e.Size }

// ReadAt reads the file; after an unclean stop the whole file is checked
// first.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if !f.verified {
		if err := f.d.Verify(context.Background(), f.e.Digest); err != nil {
			return 0, err
		}
		f.verified = true
	}
	return f.f.ReadAt(p, off)
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Section returns a reader of length bytes from offset and hands the file
// over to it (Close closes both). A whole read of a checked file is the
// *os.File itself; a window of one offers File() (*os.File, error), which
// gives the file positioned at the window, for sendfile. A whole read of an
// unchecked file is hashed as it streams and its last byte held until the
// digest matched; a window of one waits for a check of the whole file,
// bounded by ctx.
func (f *File) Section(ctx context.Context, offset, length int64) (io.ReadCloser, error) {
	whole := offset == 0 && length == f.e.Size
	switch {
	case !f.verified && whole:
		// The time before the first byte is read is the one the verdict
		// speaks for.
		var modTime int64
		if info, err := f.f.Stat(); err == nil {
			modTime = info.ModTime().UnixNano()
		}
		return oci.NewVerifyingReader(f.f, f.e.Digest, f.e.Size, f.d.checked(f.e.Digest, modTime)), nil
	case !f.verified:
		if err := f.d.Verify(ctx, f.e.Digest); err != nil {
			_ = f.f.Close()
			return nil, err
		}
	}
	if whole {
		return f.f, nil
	}
	return &section{SectionReader: io.NewSectionReader(f.f, offset, length), f: f.f}, nil
}

// section reads a window of a file and closes the file when done.
type section struct {
	*io.SectionReader
	f *os.File
}

func (s *section) Close() error { return s.f.Close() }

// File returns the file positioned at the window's start, for a server that
// sends the window with sendfile; the caller then reads exactly the
// window's length from it instead of reading s, and still closes s.
func (s *section) File() (*os.File, error) {
	_, off, _ := s.Outer()
	if _, err := s.f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return s.f, nil
}

// verifications lets concurrent first requests for an unchecked object
// share one check.
type verifications struct {
	mu      sync.Mutex // guards running
	running map[oci.Digest]*verification
}

type verification struct {
	done chan struct{} // closed when err is set
	err  error
}

// Verify checks dg's file against its digest, once, and records the
// outcome: checked, or removed (and the error says why). Concurrent callers
// share the check; ctx ends only the caller's own wait.
func (d *Disk) Verify(ctx context.Context, dg oci.Digest) error {
	d.verifying.mu.Lock()
	if d.verifying.running == nil {
		d.verifying.running = map[oci.Digest]*verification{}
	}
	v, running := d.verifying.running[dg]
	if !running {
		v = &verification{done: make(chan struct{})}
		d.verifying.running[dg] = v
	}
	d.verifying.mu.Unlock()
	if !running {
		// The first caller checks on its own goroutine: the work is bounded
		// by the file's size, and every other caller waits for it.
		v.err = d.check(dg)
		d.verifying.mu.Lock()
		delete(d.verifying.running, dg)
		d.verifying.mu.Unlock()
		close(v.done)
		return v.err
	}
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// check hashes dg's committed file and records the outcome.
func (d *Disk) check(dg oci.Digest) error {
	e, ok := d.lookup(dg)
	if !ok {
		return fmt.Errorf("disk: %s: %w", dg.Short(), tier.ErrNotFound)
	}
	if e.verified {
		return nil
	}
	f, err := os.Open(d.path(dg))
	if err != nil {
		d.forget(dg)
		return fmt.Errorf("disk: verify %s: %w", dg.Short(), err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("disk: verify %s: %w", dg.Short(), err)
	}
	h := dg.NewHash()
	n, err := io.Copy(h, f)
	switch {
	case err != nil:
		return fmt.Errorf("disk: verify %s: %w", dg.Short(), err)
	case n != e.Size || !dg.Matches(h):
		d.corrupt(dg, n, e.Size)
		return fmt.Errorf("disk: verify %s: %w", dg.Short(), tier.ErrMismatch)
	}
	d.passed(dg, info.ModTime().UnixNano())
	return nil
}

// checked records the verdict of a whole read that hashed dg's file, whose
// modification time was modTime (0: unknown) before the read began.
func (d *Disk) checked(dg oci.Digest, modTime int64) func(error) {
	return func(err error) {
		if err == nil {
			d.passed(dg, modTime)
			return
		}
		d.corrupt(dg, -1, -1)
	}
}

// Checked records that dg's content was verified by a caller that read it
// whole (a memory tier taking it in): nil marks it checked, an error
// removes it.
func (d *Disk) Checked(dg oci.Digest, err error) { d.checked(dg, 0)(err) }

// passed records that dg's file matched its digest: it is served without
// a check from now on, and its record takes modTime, the file's time
// before it was hashed (0: unknown), when it holds another.
func (d *Disk) passed(dg oci.Digest, modTime int64) {
	d.m.DiskVerified.WithLabelValues("ok").Inc()
	d.markVerified(dg)
	if modTime != 0 {
		d.recordModTime(dg, modTime)
	}
}

// recordModTime writes modTime into dg's record, so that the next clean
// start trusts the file again, unless the record holds it already or the
// file is no longer the one hashed (changed while it was read, or
// replaced). A record that cannot be written costs only a check after the
// next start.
func (d *Disk) recordModTime(dg oci.Digest, modTime int64) {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	p := d.path(dg)
	m, err := readMeta(p + metaSuffix)
	if err != nil || m.ModTime == modTime {
		return
	}
	info, err := os.Stat(p)
	if err != nil || info.ModTime().UnixNano() != modTime || info.Size() != m.Size {
		return
	}
	m.ModTime = modTime
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if writeFileDurable(d, p+metaSuffix, b) == nil {
		_ = d.syncDir(filepath.Dir(p))
	}
}

// recordedModTime is the modification time the record of the committed
// file at p holds, 0 when it holds none or cannot be read.
func recordedModTime(p string) int64 {
	m, err := readMeta(p + metaSuffix)
	if err != nil {
		return 0
	}
	return m.ModTime
}

func (d *Disk) markVerified(dg oci.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.idx.verified(dg)
}

// corrupt removes an object that failed its check.
func (d *Disk) corrupt(dg oci.Digest, got, want int64) {
	d.m.DiskVerified.WithLabelValues("mismatch").Inc()
	d.log.Warn("disk: removed an object that does not match its digest", "digest", dg.Short(), "bytes", got, "recorded", want)
	_ = d.Delete(context.Background(), dg)
}
