package cache

import (
	"fmt"
	"time"
)

// A fill that failed through upstream's fault (oci.FromUpstream: the
// registry refused, could not be reached, cut its body for good or sent
// wrong bytes, after every retry) is remembered for failMemory. Another
// replica's request for the same content in that time (Request.FromPeer)
// is answered with that failure at once, and the server marks it relayed
// (oci.RelayedHeader), rather than starting a fill that would climb the
// same ladder of retries again: a replica whose body from this one was cut
// when this one's fill failed resumes by asking again, and must learn that
// upstream failed, not make upstream fail once more. That keeps one ladder
// of retries per client request across hops. Clients' own requests start a
// new fill as before: they come back when they choose to.
const (
	failMemory  = 5 * time.Second
	maxFailures = 10_000
)

// failure is a remembered failed fill.
type failure struct {
	err   error
	until time.Time
}

// failureTable remembers failed fills by key (without route: whichever way
// the fill went, upstream failed it).
type failureTable = table[fillKey, failure]

func newFailureTable() *failureTable { return newTable[fillKey, failure](maxFailures, 0, nil) }

// failedKey is k as failures are remembered.
func (k fillKey) failedKey() fillKey {
	k.route = ""
	return k
}

// recentFailure returns the failure of a fill under key that ended within
// failMemory, if there is one.
func (c *Cache) recentFailure(key fillKey) (error, bool) {
	f, ok := c.failures.get(key.failedKey())
	if !ok || !time.Now().Before(f.until) {
		return nil, false
	}
	return fmt.Errorf("failed %s ago: %w", (failMemory - time.Until(f.until)).Round(time.Millisecond), f.err), true
}
