package disk

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cacheyd/cacheyd/tier"
)

// The budget (Config.Budget) bounds what the tier holds and what pending
// files claim, together:
//
//   - a pending file of known size claims it before its first byte; one of
//     unknown size claims as it grows (Pending.Grow);
//   - claims together never exceed the budget: one that does not fit beside
//     the others is refused with tier.ErrNoRoom, rather than every committed
//     object being evicted to make room for what may never arrive;
//   - committed content is evicted, least recently used first, to keep used
//     plus claimed within the budget.
//
// A budget of zero leaves only the file system to say no; whatever it
// refuses (full, read-only, failing) is tier.ErrFailed.

// failRetry is how long Create refuses at once after the file system failed
// a write, before it tries again.
const failRetry = 30 * time.Second

// timeNow is time.Now; a variable only so that nothing else reads the clock.
var timeNow = time.Now

// reserve claims n more bytes.
func (d *Disk) reserve(n int64) error {
	if n <= 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.budget > 0 && d.reserved+n > d.budget {
		return fmt.Errorf("disk: %d bytes beside %d claimed by pending files exceed the budget of %d: %w", n, d.reserved, d.budget, tier.ErrNoRoom)
	}
	d.reserved += n
	d.evictLocked()
	return nil
}

// unreserve gives a claim back.
func (d *Disk) unreserve(n int64) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	d.reserved -= n
	d.mu.Unlock()
}

// evictLocked removes least recently used objects until what is used and
// claimed fits the budget. Readers that have a file open keep reading it:
// unlinking does not disturb an open descriptor.
func (d *Disk) evictLocked() {
	for d.budget > 0 && d.used+d.reserved > d.budget {
		el := d.lru.Back()
		if el == nil {
			break
		}
		e := el.Value.(*entry)
		p := d.path(e.Digest)
		_ = os.Remove(p)
		_ = os.Remove(p + metaSuffix)
		d.lru.Remove(el)
		delete(d.index, e.Digest)
		d.used -= e.Size
		d.m.DiskEvictions.Inc()
	}
	d.m.DiskBytes.Set(float64(d.used))
}

// fail records that the file system failed err and returns err marked
// tier.ErrFailed: for failRetry, Create refuses at once instead of each
// caller finding out for itself.
func (d *Disk) fail(err error) error {
	d.mu.Lock()
	d.failedUntil = timeNow().Add(failRetry)
	d.mu.Unlock()
	d.log.Warn("disk: the file system failed; new content is refused for a while", "err", err, "retry_in", failRetry)
	return fmt.Errorf("%w: %w", tier.ErrFailed, err)
}

// failing returns tier.ErrFailed while a recent failure stands.
func (d *Disk) failing() error {
	d.mu.Lock()
	until := d.failedUntil
	d.mu.Unlock()
	if timeNow().Before(until) {
		return fmt.Errorf("%w: failed recently; retried after %s", tier.ErrFailed, until.Format(time.RFC3339))
	}
	return nil
}

// noSpace reports whether err is a file system without room.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
