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
// files claim, together, and nothing is claimed for an announcement:
//
//   - a pending file claims the budget as its bytes arrive (Pending.Claim),
//     in steps of claimStep, whatever size its writer was told to expect:
//     a registry that announces a blob the size of the whole cache and
//     then sends a byte a second claims one step, not the cache;
//   - committed content is evicted, least recently used first, to keep used
//     plus claimed within the budget, so only bytes that arrived ever cost
//     committed content its place;
//   - claims together never exceed the budget: a claim that does not fit
//     beside the others' is refused with tier.ErrNoRoom (its writer fails);
//   - one object may take at most half of the budget (maxShare): one
//     announced larger is refused by Create at once (tier.ErrNoRoom, its
//     pull is streamed uncached), and a pending file of unknown size is
//     refused a claim beyond it.
//
// A budget of zero leaves only the file system to say no; whatever it
// refuses (full, read-only, failing) is tier.ErrFailed. Create asks the
// file system whether it has the room an announced size needs (freeSpace),
// without taking it, so that a full disk refuses a fill before its first
// byte rather than half-way, and an announcement takes no space there
// either.

// failRetry is how long Create refuses at once after the file system failed
// a write, before it tries again.
const failRetry = 30 * time.Second

// timeNow is time.Now; a variable only so that nothing else reads the clock.
var timeNow = time.Now

// claimStep is how much a pending file claims at a time: what arrived
// beyond its claim, rounded up, so that a fill's writes do not take the
// tier's lock each, while the budget is never claimed far ahead of bytes.
// A small budget claims in smaller steps (claimUnit).
const claimStep = 1 << 20

// claimUnit is the step claims are rounded up to: claimStep, or a 64th of
// a budget too small for it (at least 4 KiB).
func (d *Disk) claimUnit() int64 {
	if d.budget <= 0 {
		return claimStep
	}
	return min(claimStep, max(d.budget/64, 4<<10))
}

// maxShare is the share of the budget one object may take: 1/maxShare.
const maxShare = 2

// share is the most one object may take of the budget, and whether there
// is a bound at all (a budget).
func (d *Disk) share() (int64, bool) { return d.budget / maxShare, d.budget > 0 }

// reserve claims n more bytes.
func (d *Disk) reserve(n int64) error {
	if n <= 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.budget > 0 && d.reserved+n > d.budget {
		return fmt.Errorf("disk: %d more bytes beside %d claimed by pending files exceed the budget of %d: %w", n, d.reserved, d.budget, tier.ErrNoRoom)
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
// unlinking does not disturb an open descriptor. While the load runs the
// order is not known yet: eviction waits for its end (load.go).
func (d *Disk) evictLocked() {
	for d.budget > 0 && d.used+d.reserved > d.budget && !d.loading {
		dg, size, ok := d.idx.oldest()
		if !ok {
			break
		}
		p := d.path(dg)
		_ = os.Remove(p)
		_ = os.Remove(p + metaSuffix)
		d.idx.remove(dg)
		d.used -= size
		d.m.DiskEvictions.Inc()
	}
	d.m.DiskBytes.Set(float64(d.used))
	d.m.DiskIndexObjects.Set(float64(d.idx.len()))
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
