package disk

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

const (
	blobsDir    = "blobs"
	pendingDir  = "pending"
	metaSuffix  = ".meta"
	cleanMarker = "clean"
	// touchEvery is how often a hit records its use on the file (its
	// access time), for the order of eviction to survive a restart.
	touchEvery = time.Minute
)

// Config configures a Disk.
type Config struct {
	// Dir holds the tier. Required. Everything in it belongs to the tier:
	// it may be wiped at any time.
	Dir string
	// Budget is the most the tier holds, committed and claimed by pending
	// files together, in bytes. Zero means unlimited: only the file system
	// says no.
	Budget int64
	// Metrics receives the tier's size and evictions. Nil means nowhere.
	Metrics *metrics.Metrics
	// Logger receives what the tier notices on its own: objects forgotten
	// on start, a failing file system. Nil means nothing is logged.
	Logger *slog.Logger
}

// entry is the index's record of one committed object.
type entry struct {
	tier.Entry
	// verified is false for content found on disk after an unclean stop
	// until its digest has been checked again.
	verified bool
	touched  time.Time // when the file's time last recorded a use
}

// Disk is the disk tier. Its methods are safe for concurrent use.
type Disk struct {
	dir    string
	budget int64
	m      *metrics.Metrics
	log    *slog.Logger
	// syncFile and syncDir make a commit durable; they are fields so that
	// a test can see them called in the right order.
	syncFile func(*os.File) error
	syncDir  func(dir string) error

	// commitMu serializes the renames and records of commits and removals,
	// and the records a passing check rewrites (verify.go), so that two
	// writers of one digest's record cannot interleave and lose a source.
	commitMu sync.Mutex

	mu    sync.Mutex // guards index, lru, used, reserved and failedUntil
	index map[oci.Digest]*list.Element
	lru   *list.List // of *entry, most recently used at the front
	used  int64
	// reserved is what pending files have claimed as their bytes arrived
	// (Pending.Claim). Together with used it stays within the budget, and
	// alone it never exceeds it.
	reserved int64
	// failedUntil is set when the file system failed a write: until then
	// Create refuses at once.
	failedUntil time.Time

	verifying verifications // after an unclean stop, one check per object
}

var _ tier.Tier = (*Disk)(nil)

// Open prepares cfg.Dir, removes pending leftovers of an earlier run (they
// were never verified) and indexes what is committed, least recently used
// first.
func Open(cfg Config) (*Disk, error) {
	if cfg.Dir == "" {
		return nil, errors.New("disk: Config.Dir is required")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Disk{
		dir: cfg.Dir, budget: cfg.Budget, m: cfg.Metrics, log: cfg.Logger,
		syncFile: (*os.File).Sync, syncDir: syncDirectory,
		index: map[oci.Digest]*list.Element{}, lru: list.New(),
	}
	if err := os.RemoveAll(filepath.Join(d.dir, pendingDir)); err != nil {
		return nil, fmt.Errorf("disk: clear pending: %w", err)
	}
	for _, sub := range []string{pendingDir, blobsDir} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
	}
	clean, err := d.takeCleanMarker()
	if err != nil {
		return nil, err
	}
	if err := d.load(clean); err != nil {
		return nil, err
	}
	return d, nil
}

// takeCleanMarker reports whether the last run stopped cleanly and removes
// the marker, durably, before anything in the tier can change: a crash from
// now on must not look like a clean stop.
func (d *Disk) takeCleanMarker() (bool, error) {
	err := os.Remove(filepath.Join(d.dir, cleanMarker))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("disk: %w", err)
	}
	if err := d.syncDir(d.dir); err != nil {
		return false, fmt.Errorf("disk: %w", err)
	}
	return true, nil
}

// Close records a clean stop. The caller makes sure nothing is being
// written.
func (d *Disk) Close() error {
	p := filepath.Join(d.dir, cleanMarker)
	if err := writeFileDurable(d, p, nil); err != nil {
		return fmt.Errorf("disk: mark clean stop: %w", err)
	}
	if err := d.syncDir(d.dir); err != nil {
		return fmt.Errorf("disk: mark clean stop: %w", err)
	}
	return nil
}

type loaded struct {
	e       entry
	used    time.Time // when it was last used, as the file's access time says
	modTime int64     // the file's modification time, in nanoseconds
}

// load walks blobs/ and rebuilds the index. An object counts only with its
// record and the recorded size; stray files, orphaned records and objects
// that are short or long are removed. After an unclean stop (clean false)
// every object is indexed as unverified; after a clean one, so is every
// object whose file's modification time is not the one recorded at its
// commit (written to since, or recorded by an earlier version; verify.go).
func (d *Disk) load(clean bool) error {
	var found []loaded
	metas := map[oci.Digest]meta{}
	forgotten, changed := 0, 0
	root := filepath.Join(d.dir, blobsDir)
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 3 {
			return removeQuiet(p)
		}
		name, isMeta := strings.CutSuffix(parts[2], metaSuffix)
		dg, perr := oci.ParseDigest(parts[0] + ":" + name)
		if perr != nil || !strings.HasPrefix(name, parts[1]) || len(parts[1]) != 2 {
			return removeQuiet(p) // a temporary file, or something nobody named
		}
		if isMeta {
			m, rerr := readMeta(p)
			if rerr != nil {
				forgotten++
				return removeQuiet(p)
			}
			metas[dg] = m
			return nil
		}
		info, ierr := de.Info()
		if ierr != nil {
			return ierr
		}
		used := lastUse(info)
		found = append(found, loaded{e: entry{Entry: tier.Entry{Digest: dg, Size: info.Size()}, touched: used}, used: used, modTime: info.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("disk: load %s: %w", root, err)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].used.Before(found[j].used) })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range found {
		e := f.e
		m, ok := metas[e.Digest]
		delete(metas, e.Digest)
		if !ok || m.Size != e.Size {
			// No record (a commit cut short, or an older layout), or not
			// the size recorded: never served as whole.
			forgotten++
			_ = removeQuiet(d.path(e.Digest))
			_ = removeQuiet(d.path(e.Digest) + metaSuffix)
			continue
		}
		e.MediaType, e.Private, e.Public = m.MediaType, m.Private, m.Public
		// A record without a time (an earlier version's) cannot vouch for
		// its file either.
		e.verified = clean && m.ModTime != 0 && m.ModTime == f.modTime
		if clean && !e.verified {
			changed++
		}
		d.index[e.Digest] = d.lru.PushFront(&e)
		d.used += e.Size
	}
	for dg := range metas { // records whose content is gone
		_ = removeQuiet(d.path(dg) + metaSuffix)
	}
	if forgotten > 0 {
		d.log.Warn("disk: forgot objects without a valid record or of the wrong size", "objects", forgotten)
	}
	if !clean && len(d.index) > 0 {
		d.log.Warn("disk: the last run did not stop cleanly; every object is verified again before or while it is first served", "objects", len(d.index))
	}
	if changed > 0 {
		d.log.Info("disk: objects whose file is not as committed, or whose record is older than this version, are verified again before or while they are first served", "objects", changed)
	}
	d.evictLocked()
	return nil
}

// Path is where content with digest dg lives (or would).
func (d *Disk) Path(dg oci.Digest) string { return d.path(dg) }

// path is where content with digest dg lives.
func (d *Disk) path(dg oci.Digest) string {
	h := dg.Hex()
	return filepath.Join(d.dir, blobsDir, dg.Algorithm(), h[:2], h)
}

// lookup returns the entry for dg and marks it recently used, recording the
// use on the file at most once per touchEvery.
func (d *Disk) lookup(dg oci.Digest) (entry, bool) {
	now := timeNow()
	d.mu.Lock()
	el, ok := d.index[dg]
	if !ok {
		d.mu.Unlock()
		return entry{}, false
	}
	d.lru.MoveToFront(el)
	e := el.Value.(*entry)
	touch := now.Sub(e.touched) >= touchEvery
	if touch {
		e.touched = now
	}
	out := *e
	d.mu.Unlock()
	if touch {
		// The access time only: the modification time identifies the
		// committed content (verify.go). A lost touch costs only order.
		_ = os.Chtimes(d.path(dg), now, time.Time{})
	}
	return out, true
}

// Stat returns dg's record.
func (d *Disk) Stat(_ context.Context, dg oci.Digest) (tier.Entry, error) {
	e, ok := d.lookup(dg)
	if !ok {
		return tier.Entry{}, fmt.Errorf("disk: %s: %w", dg.Short(), tier.ErrNotFound)
	}
	return e.Entry, nil
}

// Open returns dg's content. A file missing under a present index entry
// (the directory was wiped while serving) heals the index and is not found.
func (d *Disk) Open(_ context.Context, dg oci.Digest) (tier.Content, tier.Entry, error) {
	f, e, err := d.OpenFile(dg)
	if err != nil {
		return nil, tier.Entry{}, err
	}
	return f, e, nil
}

// OpenFile is Open with the disk's own content type.
func (d *Disk) OpenFile(dg oci.Digest) (*File, tier.Entry, error) {
	e, ok := d.lookup(dg)
	if !ok {
		return nil, tier.Entry{}, fmt.Errorf("disk: %s: %w", dg.Short(), tier.ErrNotFound)
	}
	f, err := os.Open(d.path(dg))
	if err != nil {
		d.forget(dg)
		return nil, tier.Entry{}, fmt.Errorf("disk: %s: %w", dg.Short(), tier.ErrNotFound)
	}
	return &File{f: f, d: d, e: e.Entry, verified: e.verified}, e.Entry, nil
}

// Delete removes dg from the index and the file system.
func (d *Disk) Delete(_ context.Context, dg oci.Digest) error {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	d.forget(dg)
	p := d.path(dg)
	return errors.Join(removeQuiet(p), removeQuiet(p+metaSuffix))
}

// forget drops dg from the index without touching the file system.
func (d *Disk) forget(dg oci.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(dg)
}

func (d *Disk) forgetLocked(dg oci.Digest) {
	if el, ok := d.index[dg]; ok {
		d.used -= el.Value.(*entry).Size
		d.lru.Remove(el)
		delete(d.index, dg)
		d.m.DiskBytes.Set(float64(d.used))
	}
}

// Usage reports the bytes and objects the tier holds, and the bytes
// pending files have claimed.
func (d *Disk) Usage() (bytes int64, objects int, reserved int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used, len(d.index), d.reserved
}

// removeQuiet removes p, treating an already missing file as done.
func removeQuiet(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
