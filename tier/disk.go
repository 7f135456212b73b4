package tier

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
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
//	blobs/<alg>/<hex[:2]>/<hex>.type   the manifest media type, when known
//	blobs/<alg>/<hex[:2]>/<hex>.private  the registry/repository lines where
//	                                   it was fetched only with a client's
//	                                   credentials (see private.go)
//	pending/<random>                   fills being written
//
// Content is only ever renamed into blobs/ after its digest was verified, so
// whatever is there is right. Names come only from validated digests, never
// from anything a client typed.
const (
	blobsDir      = "blobs"
	pendingDir    = "pending"
	typeSuffix    = ".type"
	privateSuffix = ".private"
)

// diskEntry is the index's record of one committed object.
type diskEntry struct {
	digest    oci.Digest
	size      int64
	mediaType string
	// private lists "registry/repository" where the content was fetched
	// only with a client's credentials; nil for public content.
	private []string
}

// disk is the content-addressed disk tier with least-recently-used eviction.
type disk struct {
	dir    string
	budget int64 // bytes; 0 means unlimited
	m      *metrics.Metrics

	mu    sync.Mutex // guards index, lru, used and reserved
	index map[oci.Digest]*list.Element
	lru   *list.List // of *diskEntry, most recently used at the front
	used  int64
	// reserved is what fills in flight have claimed before writing; the
	// tier keeps used+reserved within budget.
	reserved int64
}

// errNoRoom means the disk tier cannot take an object: larger than the
// budget, or the file system is full. The content is then streamed to the
// client without being cached.
var errNoRoom = errors.New("no room in the disk tier")

// reserve claims n bytes for a fill, evicting least recently used content to
// make room. It fails when n alone exceeds the budget.
func (d *disk) reserve(n int64) error {
	if n < 0 {
		return nil // unknown size: nothing to reserve, checked on commit
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.budget > 0 && n > d.budget {
		return fmt.Errorf("disk: %d bytes exceed the budget of %d: %w", n, d.budget, errNoRoom)
	}
	d.reserved += n
	d.evictLocked()
	return nil
}

// unreserve returns a reservation that was not committed.
func (d *disk) unreserve(n int64) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	d.reserved -= n
	d.mu.Unlock()
}

// openDisk prepares dir, removes pending leftovers of an earlier run (they
// were never verified) and indexes what is committed, oldest first.
func openDisk(dir string, budget int64, m *metrics.Metrics) (*disk, error) {
	d := &disk{dir: dir, budget: budget, m: m, index: map[oci.Digest]*list.Element{}, lru: list.New()}
	if err := os.RemoveAll(filepath.Join(dir, pendingDir)); err != nil {
		return nil, fmt.Errorf("disk: clear pending: %w", err)
	}
	for _, sub := range []string{pendingDir, blobsDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
	}
	if err := d.load(); err != nil {
		return nil, err
	}
	return d, nil
}

type loaded struct {
	e     diskEntry
	mtime time.Time
}

// load walks blobs/ and rebuilds the index. Files that are not named like a
// digest (stray or orphaned sidecars) are removed.
func (d *disk) load() error {
	var found []loaded
	types := map[oci.Digest]string{}
	private := map[oci.Digest][]string{}
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
			return os.Remove(p)
		}
		name, isType := strings.CutSuffix(parts[2], typeSuffix)
		name, isPrivate := strings.CutSuffix(name, privateSuffix)
		dg, perr := oci.ParseDigest(parts[0] + ":" + name)
		if perr != nil || !strings.HasPrefix(name, parts[1]) || len(parts[1]) != 2 {
			return os.Remove(p)
		}
		if isType || isPrivate {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				return rerr
			}
			if isType {
				types[dg] = string(b)
			} else {
				private[dg] = strings.Fields(string(b))
			}
			return nil
		}
		info, ierr := de.Info()
		if ierr != nil {
			return ierr
		}
		found = append(found, loaded{diskEntry{digest: dg, size: info.Size()}, info.ModTime()})
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
		e.mediaType, e.private = types[e.digest], private[e.digest]
		delete(types, e.digest)
		delete(private, e.digest)
		d.index[e.digest] = d.lru.PushFront(&e)
		d.used += e.size
	}
	for dg := range types { // sidecars whose content is gone
		_ = os.Remove(d.path(dg) + typeSuffix)
	}
	for dg := range private {
		_ = os.Remove(d.path(dg) + privateSuffix)
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
	if el, ok := d.index[dg]; ok {
		d.used -= el.Value.(*diskEntry).size
		d.lru.Remove(el)
		delete(d.index, dg)
		d.m.DiskBytes.Set(float64(d.used))
	}
}

// createPending opens a new pending file for a fill.
func (d *disk) createPending() (*os.File, error) {
	dir := filepath.Join(d.dir, pendingDir)
	f, err := os.CreateTemp(dir, "fill-")
	if errors.Is(err, fs.ErrNotExist) {
		// The cache directory was wiped while serving: make it again.
		if err = os.MkdirAll(dir, 0o750); err == nil {
			f, err = os.CreateTemp(dir, "fill-")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("disk: create pending file: %w", err)
	}
	return f, nil
}

// commit moves a verified pending file into place under its digest, turns
// its reservation (reserved bytes, possibly 0) into use and evicts what the
// budget no longer holds. mediaType, when set, is written first so that
// committed manifest content always has its type beside it.
func (d *disk) commit(pending string, e diskEntry, reserved int64) error {
	final := d.path(e.digest)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return fmt.Errorf("disk: commit %s: %w", e.digest.Short(), err)
	}
	if e.mediaType != "" {
		if err := writeFileAtomic(final+typeSuffix, []byte(e.mediaType)); err != nil {
			return fmt.Errorf("disk: commit %s: %w", e.digest.Short(), err)
		}
	}
	// The privacy mark goes first too: content must never be on disk
	// without its mark, or a restart would make it public.
	if e.private != nil {
		if err := writeFileAtomic(final+privateSuffix, []byte(strings.Join(e.private, "\n")+"\n")); err != nil {
			return fmt.Errorf("disk: commit %s: %w", e.digest.Short(), err)
		}
	}
	if err := os.Rename(pending, final); err != nil {
		return fmt.Errorf("disk: commit %s: %w", e.digest.Short(), err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.index[e.digest]; ok {
		// Recommitted (for example a blob later fetched as a manifest):
		// the content is the same, the media type may be new.
		old := el.Value.(*diskEntry)
		if e.mediaType == "" {
			e.mediaType = old.mediaType
		}
		d.used -= old.size
		d.lru.Remove(el)
	}
	if e.private == nil {
		// Fetched as cacheyd: public now, whatever it was before.
		_ = removeQuiet(final + privateSuffix)
	}
	d.index[e.digest] = d.lru.PushFront(&e)
	d.used += e.size
	d.reserved -= max(reserved, 0)
	d.evictLocked()
	return nil
}

// evictLocked removes least recently used objects until what is used and
// reserved fits the budget. Readers that have a file open keep reading it:
// unlinking does not disturb an open descriptor.
func (d *disk) evictLocked() {
	for d.budget > 0 && d.used+d.reserved > d.budget {
		el := d.lru.Back()
		if el == nil {
			break
		}
		e := el.Value.(*diskEntry)
		p := d.path(e.digest)
		_ = os.Remove(p)
		_ = os.Remove(p + typeSuffix)
		_ = os.Remove(p + privateSuffix)
		d.lru.Remove(el)
		delete(d.index, e.digest)
		d.used -= e.size
		d.m.DiskEvictions.Inc()
	}
	d.m.DiskBytes.Set(float64(d.used))
}

// usage reports the bytes and objects the tier holds.
func (d *disk) usage() (bytes int64, objects int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used, len(d.index)
}

// writeFileAtomic writes b to a temporary file beside p and renames it over p.
func writeFileAtomic(p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), p)
}

// removeQuiet removes p, treating an already missing file as done.
func removeQuiet(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// privateEntries lists the committed objects that carry a privacy mark.
func (d *disk) privateEntries() map[oci.Digest][]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[oci.Digest][]string{}
	for dg, el := range d.index {
		if p := el.Value.(*diskEntry).private; p != nil {
			out[dg] = p
		}
	}
	return out
}
