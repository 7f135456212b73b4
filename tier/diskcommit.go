package tier

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/cacheyd/cacheyd/oci"
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

// maxSources bounds each source list of a marked object; past it the oldest
// source is dropped, which only turns a later request there into a miss.
const maxSources = 32

// diskMeta is what <hex>.meta holds.
type diskMeta struct {
	Size      int64    `json:"size"`
	MediaType string   `json:"mediaType,omitempty"`
	Private   []string `json:"private,omitempty"`
	Public    []string `json:"public,omitempty"`
}

func readMeta(p string) (diskMeta, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return diskMeta{}, err
	}
	var m diskMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return diskMeta{}, err
	}
	if m.Size < 0 {
		return diskMeta{}, errors.New("negative size")
	}
	return m, nil
}

func metaOf(e *diskEntry) []byte {
	b, _ := json.Marshal(diskMeta{Size: e.size, MediaType: e.mediaType, Private: e.private, Public: e.public})
	return b
}

// createPending opens a new pending file for a fill. While the file system
// is failing (see fail), it refuses at once.
func (d *disk) createPending() (*os.File, error) {
	if err := d.failing(); err != nil {
		return nil, err
	}
	dir := filepath.Join(d.dir, pendingDir)
	f, err := os.CreateTemp(dir, "fill-")
	if errors.Is(err, fs.ErrNotExist) {
		// The cache directory was wiped while serving: make it again.
		if err = os.MkdirAll(dir, 0o750); err == nil {
			f, err = os.CreateTemp(dir, "fill-")
		}
	}
	if err != nil {
		return nil, d.fail(fmt.Errorf("disk: create pending file: %w", err))
	}
	return f, nil
}

// commitReq is one verified object to commit.
type commitReq struct {
	digest    oci.Digest
	size      int64
	mediaType string // "" for content only known as a blob
	// source is the "registry/repository" it was fetched from, private
	// when that was with a client's credentials.
	source  string
	private bool
}

// commit moves a verified pending file into place under its digest, durably.
// reserved is the fill's claim on the budget; commit releases it or turns
// it into use, whatever the outcome, and evicts what the budget no longer
// holds. The pending file stays open for its readers, and is removed when
// it is not needed.
//
// Content already committed under the digest is not replaced (the bytes
// are the same): the new source and media type are added to its record.
// So a fill for a registry that is not a source of private content never
// touches the private copy, and a source is never taken away: a mark once
// set is never cleared. Content that was committed public stays public,
// even if a fill with a client's credentials ends after it: it was served
// to everyone already.
func (d *disk) commit(pending *os.File, r commitReq, reserved int64) (diskEntry, error) {
	defer func() { d.unreserve(reserved) }() // unless turned into use below
	if err := d.syncFile(pending); err != nil {
		_ = removeQuiet(pending.Name())
		return diskEntry{}, d.fail(fmt.Errorf("disk: commit %s: sync: %w", r.digest.Short(), err))
	}
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	final := d.path(r.digest)

	d.mu.Lock()
	var old *diskEntry
	if el, ok := d.index[r.digest]; ok {
		old = el.Value.(*diskEntry)
	}
	d.mu.Unlock()
	if old != nil && old.verified {
		if _, err := os.Stat(final); err == nil {
			_ = removeQuiet(pending.Name())
			return d.addSource(old, r)
		}
	}

	e := diskEntry{digest: r.digest, size: r.size, mediaType: r.mediaType, verified: true}
	if old != nil {
		// Replacing content not yet verified since an unclean stop: keep
		// what its record knew.
		e.private, e.public = old.private, old.public
		if e.mediaType == "" {
			e.mediaType = old.mediaType
		}
	}
	addSource(&e, r, old == nil)
	if err := d.place(pending.Name(), final, &e); err != nil {
		_ = removeQuiet(pending.Name())
		return diskEntry{}, d.fail(fmt.Errorf("disk: commit %s: %w", r.digest.Short(), err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(r.digest)
	d.index[r.digest] = d.lru.PushFront(&e)
	d.used += e.size
	d.reserved -= max(reserved, 0)
	reserved = 0
	d.evictLocked()
	return e, nil
}

// place writes e's record and renames pending to final, then syncs the
// directory that holds both.
func (d *disk) place(pending, final string, e *diskEntry) error {
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
	if err := writeFileDurable(d, final+metaSuffix, metaOf(e)); err != nil {
		return err
	}
	if err := os.Rename(pending, final); err != nil {
		_ = removeQuiet(final + metaSuffix)
		return err
	}
	return d.syncDir(dir)
}

// addSource records r's source on old, committed content; d.commitMu is held.
func (d *disk) addSource(old *diskEntry, r commitReq) (diskEntry, error) {
	d.mu.Lock()
	e := *old
	d.mu.Unlock()
	e.private, e.public = slices.Clone(e.private), slices.Clone(e.public)
	changed := addSource(&e, r, false)
	if e.mediaType == "" && r.mediaType != "" {
		e.mediaType, changed = r.mediaType, true
	}
	if !changed {
		return e, nil
	}
	final := d.path(r.digest)
	if err := writeFileDurable(d, final+metaSuffix, metaOf(&e)); err != nil {
		return diskEntry{}, d.fail(fmt.Errorf("disk: record %s: %w", r.digest.Short(), err))
	}
	if err := d.syncDir(filepath.Dir(final)); err != nil {
		return diskEntry{}, d.fail(fmt.Errorf("disk: record %s: %w", r.digest.Short(), err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.index[r.digest]; ok {
		*el.Value.(*diskEntry) = e
	}
	return e, nil
}

// addSource adds r's source to e's lists and reports whether they changed.
// New content fetched with a client's credentials starts its marks; new
// content fetched as cacheyd records nothing, since anyone may have it from
// anywhere. Committed content that is marked learns one more source; public
// content stays public.
func addSource(e *diskEntry, r commitReq, isNew bool) bool {
	switch {
	case r.source == "":
		return false
	case isNew:
		if r.private {
			e.private = []string{r.source}
		}
		return r.private
	case !e.marked():
		return false
	}
	list := &e.public
	if r.private {
		list = &e.private
	}
	if slices.Contains(*list, r.source) {
		return false
	}
	*list = append(*list, r.source)
	if len(*list) > maxSources {
		*list = (*list)[1:]
	}
	return true
}

// writeFileDurable writes b to a temporary file beside p, syncs it and
// renames it over p. The caller syncs the directory.
func writeFileDurable(d *disk, p string, b []byte) error {
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
