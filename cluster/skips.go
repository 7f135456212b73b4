package cluster

import (
	"sync"
	"time"
)

// skips remembers which peers (and the parent) failed, so that for a while
// nobody waits for them again: requests go straight to the next source. A
// peer is asked again once its backoff has passed; the first request then
// is its probe.
type skips struct {
	backoff time.Duration
	// changed is told when addr starts or stops being skipped (for the
	// gauge); it must not call back into skips.
	changed func(addr string, skipped bool)

	mu    sync.Mutex // guards until
	until map[string]time.Time
}

func newSkips(backoff time.Duration, changed func(string, bool)) *skips {
	return &skips{backoff: backoff, changed: changed, until: map[string]time.Time{}}
}

// fail skips addr for the backoff.
func (s *skips) fail(addr string) {
	until := time.Now().Add(s.backoff)
	s.mu.Lock()
	s.until[addr] = until
	s.mu.Unlock()
	s.changed(addr, true)
	// Runs once, when the backoff has passed: the gauge shows the end of
	// the skip even if no request asks about addr meanwhile.
	time.AfterFunc(s.backoff, func() { s.skipped(addr) })
}

// skipped reports whether addr is within its backoff.
func (s *skips) skipped(addr string) bool {
	s.mu.Lock()
	until, ok := s.until[addr]
	expired := ok && !time.Now().Before(until)
	if expired {
		delete(s.until, addr)
	}
	s.mu.Unlock()
	if expired {
		s.changed(addr, false)
	}
	return ok && !expired
}
