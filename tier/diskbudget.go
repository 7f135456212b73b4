package tier

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// The disk budget (Config.DiskBytes) bounds what the tier holds and what
// fills in flight are writing, together:
//
//   - a fill that knows its size reserves it before its first byte; one
//     that does not reserves as it writes, in steps of reserveStep;
//   - reservations together never exceed the budget: a fill that does not
//     fit beside those in flight is refused (errNoRoom), and its request is
//     streamed uncached, rather than every committed object being evicted
//     to make room for what may never arrive;
//   - committed content is evicted, least recently used first, to keep
//     used plus reserved within the budget.
//
// A budget of zero leaves only the file system to say no; whatever it
// refuses (full, read-only, failing) is streamed uncached too (errDiskFailed).

// reserveStep is how much a fill of unknown size claims at a time.
const reserveStep = 1 << 20

// failRetry is how long the tier stops trying new fills on a file system
// that failed a write, before it tries again.
const failRetry = 30 * time.Second

var (
	// errNoRoom means the budget cannot take an object beside the fills in
	// flight. The content is then streamed without being cached.
	errNoRoom = errors.New("no room in the disk budget")
	// errDiskFailed means the file system refused to take a pending file
	// or its bytes: full, read-only, an I/O error, no permission. The
	// content is streamed without being cached, and committed content is
	// still served.
	errDiskFailed = errors.New("the cache file system failed")
)

// reserve claims n more bytes for a fill.
func (d *disk) reserve(n int64) error {
	if n <= 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.budget > 0 && d.reserved+n > d.budget {
		return fmt.Errorf("disk: %d bytes beside %d reserved by fills in flight exceed the budget of %d: %w", n, d.reserved, d.budget, errNoRoom)
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
		_ = os.Remove(p + metaSuffix)
		d.lru.Remove(el)
		delete(d.index, e.digest)
		d.used -= e.size
		d.m.DiskEvictions.Inc()
	}
	d.m.DiskBytes.Set(float64(d.used))
}

// fail records that the file system failed err and returns err marked as
// errDiskFailed: for failRetry, new fills are streamed uncached at once
// instead of each finding out for itself.
func (d *disk) fail(err error) error {
	d.mu.Lock()
	d.failedUntil = time.Now().Add(failRetry)
	d.mu.Unlock()
	d.log.Warn("disk: the cache file system failed; new pulls are streamed uncached for a while", "err", err, "retry_in", failRetry)
	return fmt.Errorf("%w: %w", errDiskFailed, err)
}

// failing returns errDiskFailed while a recent failure stands.
func (d *disk) failing() error {
	d.mu.Lock()
	until := d.failedUntil
	d.mu.Unlock()
	if time.Now().Before(until) {
		return fmt.Errorf("%w: failed recently; retried after %s", errDiskFailed, until.Format(time.RFC3339))
	}
	return nil
}
