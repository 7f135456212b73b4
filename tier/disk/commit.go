package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cacheyd/cacheyd/tier"
)

// A commit makes verified content durable before anyone can find it:
//
//  1. the pending file's bytes are synced (fsync), so that after a power
//     loss the name never points at a short or empty file;
//  2. its record (<hex>.meta) is written beside where it will live, synced,
//     and renamed into place;
//  3. the pending file is renamed to its digest's name;
//  4. the directory is synced, so that both renames survive a power loss.
//
// An object whose record did not make it is removed on the next start (a
// content file without a record is never served), so the order of 2 and 3
// only decides what a crash between them costs: a refetch.

// meta is what <hex>.meta holds.
type meta struct {
	Size      int64    `json:"size"`
	MediaType string   `json:"mediaType,omitempty"`
	Private   []string `json:"private,omitempty"`
	Public    []string `json:"public,omitempty"`
	// ModTime is the content file's modification time, in nanoseconds
	// since the epoch, as its last write left it: what tells on start
	// whether the file is still the one committed (see verify.go). Zero
	// in records of earlier versions.
	ModTime int64 `json:"modTime,omitempty"`
}

func readMeta(p string) (meta, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return meta{}, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, err
	}
	if m.Size < 0 {
		return meta{}, errors.New("negative size")
	}
	return m, nil
}

func metaOf(e tier.Entry, modTime int64) []byte {
	b, _ := json.Marshal(meta{Size: e.Size, MediaType: e.MediaType, Private: e.Private, Public: e.Public, ModTime: modTime})
	return b
}

// Pending is a file being written for the tier. Its writer fills it (File),
// claiming the budget as its bytes arrive (Claim), verifies what it wrote,
// and then commits it, or aborts it.
type Pending struct {
	d    *Disk
	file *os.File
	size int64 // announced, -1 unknown: claims are never rounded past it

	mu       sync.Mutex // guards arrived and reserved, claimed by concurrent writers
	arrived  int64      // bytes the writer said it was about to write
	reserved int64      // claimed from the budget: arrived, rounded up to a step
	done     bool
}

// Create opens a new pending file for an object of size bytes (-1:
// unknown). Nothing of the budget is claimed for size: the writer claims
// as bytes arrive (Claim). It fails with tier.ErrNoRoom when size is more
// than one object may take of the budget (half of it), and with
// tier.ErrFailed when the file system refuses, or says it has not the room
// for size; while the file system is failing it refuses at once.
func (d *Disk) Create(size int64) (*Pending, error) {
	if err := d.failing(); err != nil {
		return nil, err
	}
	if share, ok := d.share(); ok && size > share {
		return nil, fmt.Errorf("disk: an object of %d bytes is more than one may take of the budget of %d: %w", size, d.budget, tier.ErrNoRoom)
	}
	dir := filepath.Join(d.dir, pendingDir)
	if free, ok := freeSpace(dir); ok && size > free {
		// A file system without the room is an answer, not a failure.
		return nil, fmt.Errorf("%w: disk: %d bytes announced, %d free: %w", tier.ErrFailed, size, free, syscall.ENOSPC)
	}
	f, err := os.CreateTemp(dir, "fill-")
	if errors.Is(err, fs.ErrNotExist) {
		// The directory was wiped while serving: make it again.
		if err = os.MkdirAll(dir, 0o750); err == nil {
			f, err = os.CreateTemp(dir, "fill-")
		}
	}
	if err != nil {
		return nil, d.fail(fmt.Errorf("disk: create pending file: %w", err))
	}
	return &Pending{d: d, file: f, size: size}, nil
}

// File is the pending file, to write into and to read what is written.
func (p *Pending) File() *os.File { return p.file }

// Claim counts n more bytes about to be written, from any of the writer's
// goroutines, and claims the budget for them, in steps, evicting what was
// least recently used when the budget is full. It fails with
// tier.ErrNoRoom when the claims of all pending files would exceed the
// budget, or this file's more than one object may take.
func (p *Pending) Claim(n int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.arrived+n <= p.reserved {
		p.arrived += n
		return nil
	}
	share, bounded := p.d.share()
	if bounded && p.arrived+n > share {
		return fmt.Errorf("disk: %d bytes are more than one object may take of the budget of %d: %w", p.arrived+n, p.d.budget, tier.ErrNoRoom)
	}
	unit := p.d.claimUnit()
	step := (p.arrived + n - p.reserved + unit - 1) / unit * unit
	if bounded {
		step = min(step, share-p.reserved) // still all that arrived: checked above
	}
	if p.size >= p.arrived+n {
		step = min(step, p.size-p.reserved) // the last step, no further than the object
	}
	if err := p.d.reserve(step); err != nil {
		return err
	}
	p.arrived += n
	p.reserved += step
	return nil
}

// Failed records a write to the pending file that failed, so that Create
// refuses for a while, and returns err marked tier.ErrFailed.
func (p *Pending) Failed(err error) error { return p.d.fail(err) }

// Abort removes the pending file and gives its claim back. The file stays
// readable to whoever has it open. It does nothing after Commit.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	_ = removeQuiet(p.file.Name())
	p.mu.Lock()
	reserved := p.reserved
	p.mu.Unlock()
	p.d.unreserve(reserved)
}

// Commit puts the pending file's content, which the caller has verified to
// be e.Digest and e.Size bytes, in place under its digest, durably, and
// returns the record now held; the claim on the budget becomes use, and
// what the budget no longer holds is evicted. Content already held is not
// replaced (the bytes are the same): its record becomes tier.Merge(old, e)
// and the pending file is removed. Whatever happens, the pending file is
// gone from pending/ after Commit, and stays readable to whoever has it open;
// the caller closes it.
func (p *Pending) Commit(e tier.Entry) (tier.Entry, error) {
	if p.done {
		return tier.Entry{}, errors.New("disk: commit of a pending file already ended")
	}
	d := p.d
	defer p.Abort() // unless the claim was turned into use below
	if err := d.syncFile(p.file); err != nil {
		return tier.Entry{}, d.fail(fmt.Errorf("disk: commit %s: sync: %w", e.Digest.Short(), err))
	}
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	final := d.path(e.Digest)

	var old *entry
	if o, ok := d.indexed(e.Digest); ok {
		old = &o
	}
	if old != nil && old.verified {
		if _, err := os.Stat(final); err == nil {
			return d.record(old.Entry, e)
		}
	}
	n := entry{Entry: e, verified: true}
	if old != nil {
		// Replacing content not verified since an unclean stop, or whose
		// file was wiped: keep what its record knew.
		n.Entry = tier.Merge(old.Entry, e)
		n.Size = e.Size
	}
	if err := d.place(p.file.Name(), final, n.Entry); err != nil {
		return tier.Entry{}, d.fail(fmt.Errorf("disk: commit %s: %w", e.Digest.Short(), err))
	}
	p.done = true
	p.mu.Lock() // every write has returned: nobody claims any more
	reserved := p.reserved
	p.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(e.Digest)
	n.touched = timeNow()
	d.idx.add(n, false)
	d.used += n.Size
	d.reserved -= reserved
	d.evictLocked()
	return n.Entry, nil
}

// place writes e's record and renames pending to final, then syncs the
// directory that holds both.
func (d *Disk) place(pending, final string, e tier.Entry) error {
	dir := filepath.Dir(final)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
		// The new directory's own name must survive too.
		if err := d.syncDir(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	// The pending file's last write is synced (Commit): its modification
	// time now identifies this content, and the rename keeps it.
	info, err := os.Stat(pending)
	if err != nil {
		return err
	}
	if err := writeFileDurable(d, final+metaSuffix, metaOf(e, info.ModTime().UnixNano())); err != nil {
		return err
	}
	if err := os.Rename(pending, final); err != nil {
		_ = removeQuiet(final + metaSuffix)
		return err
	}
	return d.syncDir(dir)
}

// record merges e into the record of committed content; d.commitMu is held.
func (d *Disk) record(old, e tier.Entry) (tier.Entry, error) {
	m := tier.Merge(old, e)
	if equalRecords(m, old) {
		return old, nil
	}
	final := d.path(e.Digest)
	// The content file stays as it was: so does the time that identifies it.
	if err := writeFileDurable(d, final+metaSuffix, metaOf(m, recordedModTime(final))); err != nil {
		return tier.Entry{}, d.fail(fmt.Errorf("disk: record %s: %w", e.Digest.Short(), err))
	}
	if err := d.syncDir(filepath.Dir(final)); err != nil {
		return tier.Entry{}, d.fail(fmt.Errorf("disk: record %s: %w", e.Digest.Short(), err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.idx.record(e.Digest, m)
	return m, nil
}

func equalRecords(a, b tier.Entry) bool {
	return a.MediaType == b.MediaType && len(a.Private) == len(b.Private) && len(a.Public) == len(b.Public)
}

// Put stores r's e.Size bytes under e.Digest, verified while written.
func (d *Disk) Put(_ context.Context, e tier.Entry, r io.Reader) (tier.Entry, error) {
	p, err := d.Create(e.Size)
	if err != nil {
		return tier.Entry{}, err
	}
	defer p.file.Close()
	if err := p.Claim(e.Size); err != nil {
		p.Abort()
		return tier.Entry{}, err
	}
	h := e.Digest.NewHash()
	n, err := io.Copy(io.MultiWriter(p.file, h), io.LimitReader(r, e.Size+1))
	switch {
	case err != nil:
		p.Abort()
		return tier.Entry{}, fmt.Errorf("disk: put %s: %w", e.Digest.Short(), err)
	case n != e.Size || !e.Digest.Matches(h):
		p.Abort()
		return tier.Entry{}, fmt.Errorf("disk: put %s: %d bytes: %w", e.Digest.Short(), n, tier.ErrMismatch)
	}
	return p.Commit(e)
}

// writeFileDurable writes b to a temporary file beside p, syncs it and
// renames it over p. The caller syncs the directory.
func writeFileDurable(d *Disk, p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = d.syncFile(f)
	}
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), p)
}

// syncDirectory makes the entries of dir (renames, removals) durable.
func syncDirectory(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := f.Sync()
	return errors.Join(serr, f.Close())
}
