package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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
	// on start, the load's progress, a failing file system. Nil means
	// nothing is logged.
	Logger *slog.Logger
	// LoadGate, when set, is called by the load before each of its
	// batches (a directory of objects) and may hold it there: a test
	// looks at the tier while it loads. Nil means the load runs freely.
	LoadGate func()
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

	mu   sync.Mutex // guards idx, used, reserved, failedUntil, loading and gone
	idx  *index
	used int64
	// reserved is what pending files have claimed as their bytes arrived
	// (Pending.Claim). Together with used it stays within the budget, and
	// alone it never exceeds it.
	reserved int64
	// failedUntil is set when the file system failed a write: until then
	// Create refuses at once.
	failedUntil time.Time
	// loading is true until the load has indexed everything on disk:
	// until then a miss looks on disk (probe) and nothing is evicted.
	loading bool
	// gone holds what was removed from the index while the load runs,
	// so that a loader that found it before cannot index it again.
	gone map[oci.Digest]struct{}

	clean  bool          // the last run stopped cleanly; set by Open
	gate   func()        // Config.LoadGate, or nothing
	loaded chan struct{} // closed when the load is over
	stop   chan struct{} // closed by Close: the load ends early
	closed sync.Once     // closes stop

	verifying verifications // after an unclean stop, one check per object
}

var _ tier.Tier = (*Disk)(nil)

// Open prepares cfg.Dir, removes pending leftovers of an earlier run (they
// were never verified) and starts indexing what is committed in the
// background (load.go): the tier serves at once, and Loaded says when the
// index is whole.
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
		idx: newIndex(), loading: true, gone: map[oci.Digest]struct{}{}, gate: cfg.LoadGate,
		loaded: make(chan struct{}), stop: make(chan struct{}),
	}
	if d.gate == nil {
		d.gate = func() {}
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
	d.clean = clean
	d.m.DiskIndexLoading.Set(1)
	// The load ends when it has walked blobs/, or at Close.
	go d.load()
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

// Close ends the load, if it still runs, and records a clean stop. The
// caller makes sure nothing is being written.
func (d *Disk) Close() error {
	d.closed.Do(func() { close(d.stop) })
	<-d.loaded
	p := filepath.Join(d.dir, cleanMarker)
	if err := writeFileDurable(d, p, nil); err != nil {
		return fmt.Errorf("disk: mark clean stop: %w", err)
	}
	if err := d.syncDir(d.dir); err != nil {
		return fmt.Errorf("disk: mark clean stop: %w", err)
	}
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
// use on the file at most once per touchEvery. While the load runs, a
// digest it has not reached yet is looked for on disk.
func (d *Disk) lookup(dg oci.Digest) (entry, bool) {
	now := timeNow()
	d.mu.Lock()
	out, touch, ok := d.idx.use(dg, now, touchEvery)
	loading := d.loading
	d.mu.Unlock()
	if !ok && loading && d.probe(dg) {
		d.mu.Lock()
		out, touch, ok = d.idx.use(dg, now, touchEvery)
		d.mu.Unlock()
	}
	if !ok {
		return entry{}, false
	}
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
	if d.loading {
		d.gone[dg] = struct{}{}
	}
	if size, ok := d.idx.remove(dg); ok {
		d.used -= size
		d.m.DiskBytes.Set(float64(d.used))
		d.m.DiskIndexObjects.Set(float64(d.idx.len()))
	}
}

// Usage reports the bytes and objects the tier holds, and the bytes
// pending files have claimed.
func (d *Disk) Usage() (bytes int64, objects int, reserved int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used, d.idx.len(), d.reserved
}

// removeQuiet removes p, treating an already missing file as done.
func removeQuiet(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
