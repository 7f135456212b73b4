package cache

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// fillSlots bounds the fills that fetch at once, in all and per registry,
// and shares the slots fairly between registries. Each running fill holds
// an upstream connection and a copy buffer, and a fill outlives the clients
// that asked for it, so without a bound many slow upstreams could take all
// of cacheyd's memory and connections; without fairness, one registry (or a
// handful of names a client made up) that makes no progress could hold
// every slot while everyone else's pulls wait. So:
//
//   - A fill waits for a slot before its first upstream request, for at
//     most Config.AnswerTimeout; its readers wait with it, each for at most
//     the same, and are then answered 503 (too many fills), never a
//     gateway timeout that would blame upstream.
//   - A free slot goes to a waiting fill of the registry that runs the
//     fewest fills, so a registry with one fill waiting is not queued
//     behind another's hundred; no registry runs more than its limit.
//   - A fill makes progress while it writes stallBytes per stall window
//     (Config.FillStall). A fill that makes none and that nobody reads is
//     stopped (it was abandoned by its clients; its registry drips). A
//     waiting fill may take the slot of a fill nobody reads that is below
//     that rate over the last tenth of a window or more, and that of a
//     stalled fill of another registry, from the registry running the
//     most fills first. A fill that progresses keeps its slot, read or
//     not: cutting it would waste what it fetched, and a client reading
//     windows (containerd's parallel chunks) leaves it unread between
//     two of them.
type fillSlots struct {
	capacity, perMax int
	window           time.Duration // a stall window
	m                slotMetrics

	mu       sync.Mutex                // guards everything below
	running  int                       // slots held
	regs     map[string]*registrySlots // registries with fills running or waiting
	holders  map[*slot]struct{}        // fills holding a slot
	waiting  int                       // fills waiting for a slot
	yielding int                       // holders told to give their slot up, not gone yet
	// wake is closed and replaced when a slot frees or a holder stalls,
	// so that the waiting fills look again.
	wake chan struct{}
}

// stallBytes is what a fill must write per stall window to be making
// progress: 64 KiB in the default 10 s, 6.4 KB/s.
const stallBytes = 64 << 10

// slotMetrics is what the slots count.
type slotMetrics struct {
	waiting func(delta float64) // fills waiting for a slot
	stopped func(reason string) // fills stopped: "unread" or "yielded"
}

type registrySlots struct{ running, waiting int }

// slot is one fill's place among the slots: waiting for one, then holding
// it until release.
type slot struct {
	registry string
	progress func() int64            // bytes the fill has written
	readers  func() int              // requests reading the fill or waiting for it
	stop     context.CancelCauseFunc // ends the fill, with the cause

	// Guarded by fillSlots.mu.
	mark     int64     // progress at since
	since    time.Time // start of the window being measured
	stalled  bool      // no progress in the last whole window
	yielding bool      // told to give its slot up
}

func newFillSlots(capacity, perRegistry int, window time.Duration, m slotMetrics) *fillSlots {
	return &fillSlots{capacity: capacity, perMax: perRegistry, window: window, m: m,
		regs: map[string]*registrySlots{}, holders: map[*slot]struct{}{}, wake: make(chan struct{})}
}

// errTooManyFills answers a request whose fill found no slot in time.
func errTooManyFills(registry string) error {
	return &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, RetryAfterHeader: "1",
		Message: fmt.Sprintf("too many fills in flight (registry %s); try again", registry)}
}

// Why a fill was stopped for making no progress: upstream's doing, since
// its registry sent (almost) nothing.
func errUnread(window time.Duration) error {
	return upstreamFault(fmt.Errorf("under %d bytes in %s and nobody reading: the fill gave its slot up", stallBytes, window))
}

func errYielded(window time.Duration) error {
	return upstreamFault(fmt.Errorf("under %d bytes in %s while other fills waited: the fill gave its slot up", stallBytes, window))
}

// acquire waits for a slot for sl until ctx ends (errTooManyFills). The
// caller calls release once the fill is done with it.
func (s *fillSlots) acquire(ctx context.Context, sl *slot) error {
	s.mu.Lock()
	r := s.regs[sl.registry]
	if r == nil {
		r = &registrySlots{}
		s.regs[sl.registry] = r
	}
	r.waiting++
	s.waiting++
	s.m.waiting(1)
	defer s.m.waiting(-1)
	for {
		if s.grantableLocked(r) {
			r.waiting--
			s.waiting--
			r.running++
			s.running++
			sl.since, sl.mark = time.Now(), 0
			s.holders[sl] = struct{}{}
			s.mu.Unlock()
			return nil
		}
		var recheck *time.Timer
		if s.running >= s.capacity && r.running < s.perMax {
			s.yieldLocked(sl.registry)
			// Holders' rates change as time passes: look again then.
			recheck = time.NewTimer(s.window / 10)
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-timerC(recheck):
		case <-ctx.Done():
			s.mu.Lock()
			r.waiting--
			s.waiting--
			s.dropLocked(sl.registry, r)
			// Another registry's fill may be next now: this one no
			// longer stood before it.
			s.signalLocked()
			s.mu.Unlock()
			return errTooManyFills(sl.registry)
		}
		if recheck != nil {
			recheck.Stop()
		}
		s.mu.Lock()
	}
}

// timerC is t's channel, or nil (never ready) without a timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// grantableLocked reports whether a fill of r may take a slot now: one is
// free, r is below its limit, and no registry running fewer fills than r
// has one waiting.
func (s *fillSlots) grantableLocked(r *registrySlots) bool {
	if s.running >= s.capacity || r.running >= s.perMax {
		return false
	}
	for _, o := range s.regs {
		if o.waiting > 0 && o.running < r.running && o.running < s.perMax {
			return false
		}
	}
	return true
}

// yieldLocked makes a holder give its slot up for a waiting fill of
// registry, unless enough are doing so for every waiting fill already: one
// nobody reads first (of any registry), else a stalled one of another
// registry, from the registry running the most fills.
func (s *fillSlots) yieldLocked(registry string) {
	if s.yielding >= s.waiting {
		return
	}
	var victim *slot
	better := func(h *slot) bool {
		return victim == nil || s.regs[h.registry].running > s.regs[victim.registry].running
	}
	now := time.Now()
	for h := range s.holders {
		if !h.yielding && s.idleLocked(h, now) && h.readers() == 0 && better(h) {
			victim = h
		}
	}
	if victim == nil {
		for h := range s.holders {
			if !h.yielding && h.stalled && h.registry != registry && better(h) {
				victim = h
			}
		}
	}
	if victim == nil {
		return
	}
	victim.yielding = true
	s.yielding++
	s.m.stopped("yielded")
	victim.stop(errYielded(s.window))
}

// idleLocked reports whether h made less than stallBytes in the last
// window, or is below that rate over the part of the window measured so
// far, once that is a tenth of a window or more.
func (s *fillSlots) idleLocked(h *slot, now time.Time) bool {
	if h.stalled {
		return true
	}
	elapsed := now.Sub(h.since)
	if elapsed < s.window/10 {
		return false
	}
	return float64(h.progress()-h.mark) < stallBytes*elapsed.Seconds()/s.window.Seconds()
}

// release gives sl's slot back.
func (s *fillSlots) release(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.holders, sl)
	if sl.yielding {
		s.yielding--
	}
	r := s.regs[sl.registry]
	r.running--
	s.running--
	s.dropLocked(sl.registry, r)
	s.signalLocked()
}

// dropLocked forgets a registry with nothing running or waiting.
func (s *fillSlots) dropLocked(registry string, r *registrySlots) {
	if r.running == 0 && r.waiting == 0 {
		delete(s.regs, registry)
	}
}

func (s *fillSlots) signalLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// scan measures every holder whose window has passed: one that wrote less
// than stallBytes in it is stalled; a stalled one nobody reads is stopped,
// and the waiting fills are told when one stalled, so that they may take
// its slot. The cache calls it every window.
func (s *fillSlots) scan(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stalled := false
	for h := range s.holders {
		if now.Sub(h.since) < s.window {
			continue
		}
		n := h.progress()
		h.stalled = n-h.mark < stallBytes
		h.mark, h.since = n, now
		if !h.stalled {
			continue
		}
		stalled = true
		if !h.yielding && h.readers() == 0 {
			h.yielding = true
			s.yielding++
			s.m.stopped("unread")
			h.stop(errUnread(s.window))
		}
	}
	if stalled && s.waiting > 0 {
		s.signalLocked()
	}
}

// watch scans the slots every window until ctx ends.
func (s *fillSlots) watch(ctx context.Context) {
	t := time.NewTicker(s.window)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.scan(now)
		case <-ctx.Done():
			return
		}
	}
}
