package disk

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// The load rebuilds the index from blobs/ after a start, a few directories
// of blobs/<alg>/<hex[:2]> at a time, in the background: Open returns at once
// and the tier serves while it runs. A request for a digest the load has
// not reached yet is answered from its file and record, examined exactly
// as the load examines them (probe), and indexed then, so that nothing on
// disk is a miss. What the load finds is indexed behind everything used
// since the start and, once it is done, put in the order of the uses the
// files recorded (index.settle); only then is anything evicted: until
// then the order is not known, and the budget may be overrun by what was
// committed meanwhile, which is counted and evicted at the end.

// progressEvery is how often the load logs how far it got.
const progressEvery = 5 * time.Second

// loadCounts is what the load found so far.
type loadCounts struct {
	objects, bytes     int64
	forgotten, changed int
}

// load indexes what blobs/ holds and then closes d.loaded. It stops early
// when d.stop is closed (Close).
func (d *Disk) load() {
	defer close(d.loaded)
	start := timeNow()
	var c loadCounts
	err := d.walk(&c, start)
	d.mu.Lock()
	d.loading, d.gone = false, nil
	d.idx.settle()
	d.evictLocked()
	objects, used := d.idx.len(), d.used
	d.mu.Unlock()
	d.m.DiskIndexLoading.Set(0)
	if err != nil {
		d.log.Error("disk: the load of the index failed; what it did not reach is not served until it is committed again", "err", err)
	}
	if c.forgotten > 0 {
		d.log.Warn("disk: forgot objects without a valid record or of the wrong size", "objects", c.forgotten)
	}
	if !d.clean && objects > 0 {
		d.log.Warn("disk: the last run did not stop cleanly; every object is verified again before or while it is first served", "objects", objects)
	}
	if c.changed > 0 {
		d.log.Info("disk: objects whose file is not as committed, or whose record is older than this version, are verified again before or while they are first served", "objects", c.changed)
	}
	select {
	case <-d.stop:
		d.log.Info("disk: the load of the index ended at the stop", "objects", objects, "bytes", used)
	default:
		d.log.Info("disk: index loaded", "objects", objects, "bytes", used, "seconds", timeNow().Sub(start).Seconds())
	}
}

// loaders is how many directories the load reads at once: a file system
// answers several lookups at a time, a cold disk most of all.
const loaders = 4

// walk indexes every directory of blobs/, removing what has no place in it.
func (d *Disk) walk(c *loadCounts, start time.Time) error {
	root := filepath.Join(d.dir, blobsDir)
	algs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("disk: load %s: %w", root, err)
	}
	type dir struct{ path, alg, prefix string }
	var dirs []dir
	for _, a := range algs {
		ap := filepath.Join(root, a.Name())
		if !a.IsDir() {
			_ = removeQuiet(ap)
			continue
		}
		prefixes, err := os.ReadDir(ap)
		if err != nil {
			return fmt.Errorf("disk: load %s: %w", ap, err)
		}
		for _, p := range prefixes {
			pp := filepath.Join(ap, p.Name())
			if !p.IsDir() {
				_ = removeQuiet(pp)
				continue
			}
			dirs = append(dirs, dir{pp, a.Name(), p.Name()})
		}
	}
	var (
		next   atomic.Int64
		mu     sync.Mutex // guards c, last and failed
		last   = start
		failed error
		wg     sync.WaitGroup
	)
	for range loaders {
		// Each loader takes the next directory until none is left, one
		// failed, or Close stops the load.
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				mu.Lock()
				done := i >= len(dirs) || failed != nil
				mu.Unlock()
				select {
				case <-d.stop:
					done = true
				default:
				}
				if done {
					return
				}
				d.gate()
				var dc loadCounts
				err := d.loadDir(dirs[i].path, dirs[i].alg, dirs[i].prefix, &dc)
				d.mu.Lock()
				indexed := d.idx.len() // what requests and commits indexed too
				d.mu.Unlock()
				d.m.DiskIndexObjects.Set(float64(indexed))
				mu.Lock()
				failed = cmp.Or(failed, err)
				c.objects, c.bytes = c.objects+dc.objects, c.bytes+dc.bytes
				c.forgotten, c.changed = c.forgotten+dc.forgotten, c.changed+dc.changed
				if now := timeNow(); now.Sub(last) >= progressEvery {
					last = now
					d.log.Info("disk: loading the index", "objects", c.objects, "bytes", c.bytes, "seconds", now.Sub(start).Seconds())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

// loadDir indexes the objects of one directory, blobs/<alg>/<prefix>.
func (d *Disk) loadDir(dir, alg, prefix string, c *loadCounts) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("disk: load %s: %w", dir, err)
	}
	names := make(map[string]bool, len(ents))
	for _, de := range ents {
		if de.IsDir() {
			_ = os.RemoveAll(filepath.Join(dir, de.Name()))
			continue
		}
		names[de.Name()] = true
	}
	for _, de := range ents {
		name := de.Name()
		if !names[name] {
			continue
		}
		h, isMeta := strings.CutSuffix(name, metaSuffix)
		dg, perr := oci.ParseDigest(alg + ":" + h)
		switch {
		case perr != nil || len(prefix) != 2 || !strings.HasPrefix(h, prefix):
			d.removeStray(filepath.Join(dir, name), "") // a temporary file, or something nobody named
		case isMeta && !names[h]:
			d.removeStray(filepath.Join(dir, name), filepath.Join(dir, h)) // a record whose content is gone
		case !isMeta:
			d.loadOne(dg, c)
		}
	}
	return nil
}

// removeStray removes p, which has no place in blobs/, unless it is the
// record of content that is there by now. It holds commitMu, so that what
// a commit is writing (a temporary record, a record before its content)
// stays: the tier serves and commits while the load runs.
func (d *Disk) removeStray(p, content string) {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	if content != "" {
		if _, err := os.Lstat(content); err == nil {
			return
		}
	}
	_ = removeQuiet(p)
}

// loadOne indexes dg as the load found it, unless a request or a commit
// indexed it first, or it was removed meanwhile (Disk.gone): loaders read
// without the commit lock, side by side. An object found damaged is looked
// at again under it, so that one a commit is putting in place is not
// taken for damaged, and only then removed.
func (d *Disk) loadOne(dg oci.Digest, c *loadCounts) {
	d.mu.Lock()
	_, known := d.idx.find(dg)
	d.mu.Unlock()
	if known {
		return
	}
	e, st := d.examine(dg)
	if st != found {
		d.commitMu.Lock()
		if e, st = d.examine(dg); st == damaged {
			d.discard(dg)
		}
		d.commitMu.Unlock()
		if st != found {
			c.forgotten++
			return
		}
	}
	d.mu.Lock()
	_, known = d.idx.find(dg)
	_, gone := d.gone[dg]
	if !known && !gone {
		d.idx.add(e, true)
		d.used += e.Size
	}
	d.mu.Unlock()
	if known || gone {
		return
	}
	if d.clean && !e.verified {
		c.changed++
	}
	c.objects++
	c.bytes += e.Size
}

// An object on disk, as examine finds it.
const (
	absent  = iota // no content file
	damaged        // without its record, or not of the size recorded
	found
)

// examine reads dg's file and record as they are on disk: an object counts
// only with its record and the recorded size, and one that has not both
// (a commit cut short, a file cut or grown since) is damaged: removed
// (discard) and never served as whole. It is trusted without a check only
// after a clean stop and when its file's modification time is the one
// recorded at its commit (verify.go); a record without a time (an earlier
// version's) cannot vouch for its file either.
func (d *Disk) examine(dg oci.Digest) (entry, int) {
	p := d.path(dg)
	info, err := os.Lstat(p)
	if err != nil || !info.Mode().IsRegular() {
		return entry{}, absent
	}
	m, err := readMeta(p + metaSuffix)
	if err != nil || m.Size != info.Size() {
		return entry{}, damaged
	}
	return entry{
		Entry:    tier.Entry{Digest: dg, Size: m.Size, MediaType: m.MediaType, Private: m.Private, Public: m.Public},
		verified: d.clean && m.ModTime != 0 && m.ModTime == info.ModTime().UnixNano(),
		touched:  lastUse(info),
	}, found
}

// discard removes a damaged object's file and record; d.commitMu is held.
func (d *Disk) discard(dg oci.Digest) {
	p := d.path(dg)
	_ = removeQuiet(p)
	_ = removeQuiet(p + metaSuffix)
}

// probe finds dg on disk for a request while the load runs (indexed).
func (d *Disk) probe(dg oci.Digest) bool {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	_, ok := d.indexed(dg)
	return ok
}

// indexed returns dg's record from the index or, while the load runs and
// has not reached it, from disk, indexing it as just used. d.commitMu is
// held.
func (d *Disk) indexed(dg oci.Digest) (entry, bool) {
	d.mu.Lock()
	e, ok := d.idx.get(dg)
	loading := d.loading
	d.mu.Unlock()
	if ok || !loading {
		return e, ok
	}
	e, st := d.examine(dg)
	if st == damaged {
		d.discard(dg)
	}
	if st != found {
		return entry{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if known, ok := d.idx.get(dg); ok { // a loader got there first
		return known, true
	}
	d.idx.add(e, false)
	d.used += e.Size
	return e, true
}

// Loaded is closed once the index holds everything the tier found on disk
// at its start (and the load has evicted what the budget cannot hold).
func (d *Disk) Loaded() <-chan struct{} { return d.loaded }
