package cluster

import (
	"sync"
	"time"
)

// skips remembers that the parent failed, so that for a while nobody waits
// for it again: requests go straight to upstream. It is asked again once
// its backoff has passed; the first request then is its probe. (Members
// are skipped until a probe finds them proving the cluster secret again:
// members.go.)
type skips struct {
	backoff time.Duration

	mu    sync.Mutex // guards until
	until map[string]time.Time
}

func newSkips(backoff time.Duration) *skips {
	return &skips{backoff: backoff, until: map[string]time.Time{}}
}

// fail skips addr for the backoff.
func (s *skips) fail(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.until[addr] = time.Now().Add(s.backoff)
}

// skipped reports whether addr is within its backoff.
func (s *skips) skipped(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.until[addr]
	if ok && !time.Now().Before(until) {
		delete(s.until, addr)
		return false
	}
	return ok
}
