package tier

import (
	"container/list"
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
)

// The disk tier's layout under Config.Dir:
//
//	blobs/<alg>/<hex[:2]>/<hex>        committed content, named by its digest
//	blobs/<alg>/<hex[:2]>/<hex>.meta   its record: size, manifest media type,
//	                                   and the sources of private content
//	pending/<random>                   fills being written
//	clean                              present only while cacheyd is stopped
//	                                   after a clean shutdown
//
// Content is only ever renamed into blobs/ after its digest was verified,
// and only after its bytes and its record are on stable storage (diskcommit.go),
// so that a power loss cannot leave a short file under a digest's name. An
// object counts only with both files and a content size equal to the
// recorded one; anything else found on start is removed. After an unclean
// stop (no clean marker) every object is also re-verified before or while it
// is first served (diskverify.go). Names come only from validated digests,
// never from anything a client typed.
const (
	blobsDir    = "blobs"
	pendingDir  = "pending"
	metaSuffix  = ".meta"
	cleanMarker = "clean"
)

// diskEntry is the index's record of one committed object.
type diskEntry struct {
	digest    oci.Digest
	size      int64
	mediaType string
	// private lists the "registry/repository" sources where the content was
	// fetched only with a client's credentials, public those where it was
	// later fetched as cacheyd. Both are nil for public content; content
	// with a private source is marked (see private.go).
	private, public []string
	// verified is false for content found on disk after an unclean stop
	// until its digest has been checked again.
	verified bool
}

// marked reports whether the content was fetched with a client's
// credentials: it is then served only for its recorded sources.
func (e *diskEntry) marked() bool { return len(e.private) > 0 }

// disk is the content-addressed disk tier with least-recently-used eviction
// under a byte budget that fills in flight count against too (diskbudget.go).
type disk struct {
	dir    string
	budget int64 // bytes; 0 means unlimited
	m      *metrics.Metrics
	log    *slog.Logger
	// syncFile and syncDir make a commit durable; they are fields so that
	// a test can see them called in the right order.
	syncFile func(*os.File) error
	syncDir  func(dir string) error

	// commitMu serializes the renames and records of commits, so that two
	// commits of one digest cannot interleave and lose a source.
	commitMu sync.Mutex

	mu    sync.Mutex // guards index, lru, used, reserved and failedUntil
	index map[oci.Digest]*list.Element
	lru   *list.List // of *diskEntry, most recently used at the front
	used  int64
	// reserved is what fills in flight have claimed: their announced sizes,
	// or what they have written when upstream announced none. The tier
	// keeps reserved within the budget and used+reserved within it by
	// evicting committed content.
	reserved int64
	// failedUntil is set when the file system failed a write: until then
	// new fills are not tried on disk but streamed uncached.
	failedUntil time.Time

	verifying verifications // after an unclean stop, one check per object
}

// openDisk prepares dir, removes pending leftovers of an earlier run (they
// were never verified) and indexes what is committed, oldest first.
func openDisk(dir string, budget int64, m *metrics.Metrics, log *slog.Logger) (*disk, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &disk{
		dir: dir, budget: budget, m: m, log: log,
		syncFile: (*os.File).Sync, syncDir: syncDirectory,
		index: map[oci.Digest]*list.Element{}, lru: list.New(),
	}
	if err := os.RemoveAll(filepath.Join(dir, pendingDir)); err != nil {
		return nil, fmt.Errorf("disk: clear pending: %w", err)
	}
	for _, sub := range []string{pendingDir, blobsDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
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
// the marker, durably, before anything in the cache can change: a crash
// from now on must not look like a clean stop.
func (d *disk) takeCleanMarker() (bool, error) {
	p := filepath.Join(d.dir, cleanMarker)
	err := os.Remove(p)
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

// close records a clean stop. The caller makes sure no fill is running.
func (d *disk) close() error {
	p := filepath.Join(d.dir, cleanMarker)
	if err := writeFileDurable(d, p, nil); err != nil {
		return fmt.Errorf("disk: mark clean stop: %w", err)
	}
	return nil
}

type loaded struct {
	e     diskEntry
	mtime time.Time
}

// load walks blobs/ and rebuilds the index. An object counts only with its
// record and the recorded size; stray files, orphaned records and objects
// that are short or long are removed. After an unclean stop (clean false)
// every object is indexed as unverified.
func (d *disk) load(clean bool) error {
	var found []loaded
	metas := map[oci.Digest]diskMeta{}
	forgotten := 0
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
		found = append(found, loaded{diskEntry{digest: dg, size: info.Size(), verified: clean}, info.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("disk: load %s: %w", root, err)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].mtime.Before(found[j].mtime) })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range found {
		e := f.e
		m, ok := metas[e.digest]
		delete(metas, e.digest)
		if !ok || m.Size != e.size {
			// No record (a commit cut short, or an older layout), or not
			// the size recorded: never served as whole.
			forgotten++
			_ = removeQuiet(d.path(e.digest))
			_ = removeQuiet(d.path(e.digest) + metaSuffix)
			continue
		}
		e.mediaType, e.private, e.public = m.MediaType, m.Private, m.Public
		d.index[e.digest] = d.lru.PushFront(&e)
		d.used += e.size
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
	d.evictLocked()
	return nil
}

// path is where content with digest dg lives.
func (d *disk) path(dg oci.Digest) string {
	h := dg.Hex()
	return filepath.Join(d.dir, blobsDir, dg.Algorithm(), h[:2], h)
}

// lookup returns the entry for dg and marks it recently used.
func (d *disk) lookup(dg oci.Digest) (diskEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.index[dg]
	if !ok {
		return diskEntry{}, false
	}
	d.lru.MoveToFront(el)
	return *el.Value.(*diskEntry), true
}

// open returns the committed file for dg. A file missing under a present
// index entry (the directory was wiped while serving) heals the index and
// counts as a miss.
func (d *disk) open(dg oci.Digest) (*os.File, diskEntry, bool) {
	e, ok := d.lookup(dg)
	if !ok {
		return nil, diskEntry{}, false
	}
	f, err := os.Open(d.path(dg))
	if err != nil {
		d.forget(dg)
		return nil, diskEntry{}, false
	}
	return f, e, true
}

// forget drops dg from the index without touching the file system.
func (d *disk) forget(dg oci.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(dg)
}

func (d *disk) forgetLocked(dg oci.Digest) {
	if el, ok := d.index[dg]; ok {
		d.used -= el.Value.(*diskEntry).size
		d.lru.Remove(el)
		delete(d.index, dg)
		d.m.DiskBytes.Set(float64(d.used))
	}
}

// discard removes dg from the index and the file system: content that
// turned out not to be what its name says.
func (d *disk) discard(dg oci.Digest) {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	d.forget(dg)
	p := d.path(dg)
	_ = removeQuiet(p)
	_ = removeQuiet(p + metaSuffix)
}

// usage reports the bytes and objects the tier holds.
func (d *disk) usage() (bytes int64, objects int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used, len(d.index)
}

// removeQuiet removes p, treating an already missing file as done.
func removeQuiet(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
