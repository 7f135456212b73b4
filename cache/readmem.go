package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// What the cache reads whole into memory, rather than streams through a
// file, is bounded by one budget of bytes (Config.ReadMemory): a manifest
// by a tag whose registry names no digest (tags.go), a listing (listing.go),
// and the copy of a small committed object into the memory tier (fill.go's
// commit, digest.go's fromTiers). Without it, every request of such a
// manifest or listing held up to 4 MiB of its own, and a burst of them
// took gigabytes.
//
//   - A read claims its memory as its bytes arrive, readStep at a time
//     (each step is claimed before it is allocated and read into), never
//     for the size a registry announces: a registry that announces 4 MiB
//     and drips holds what it sent, rounded up to a step.
//   - One registry holds at most a quarter of the budget, so one that drips
//     many large manifests cannot take the memory others read with.
//   - A claim that does not fit fails at once, never waits: a read never
//     holds part of the budget while it waits for more of it, so reads
//     cannot deadlock, and a slow registry makes nobody wait. A request's
//     read that fails so is answered 503 UNAVAILABLE with Retry-After; a
//     copy into the memory tier is only skipped (the object is served from
//     disk).
//   - A claim lasts while the read's bytes are held for it: until they are
//     handed to the disk and memory tiers (whose own budgets bound them) or
//     to the listing table (bounded by maxListingBytes), or, for a listing
//     read for one request alone, until the response that sends it is done
//     (Listing.Release).
//
// Claims never wait, so there is no queue to keep fair: the quarter is the
// fairness. golang.org/x/sync/semaphore would fit one level of it, but not
// the per-registry one, and it does not tell the bytes in use, which the
// gauge and the tests read; a mutex over two counters does both.

// readStep is how much of the budget a read claims at a time, and the size
// of the pieces it reads into.
const readStep = 64 << 10

// readMemory is the budget of memory for what is read whole.
type readMemory struct {
	total, perRegistry int64
	inUse              prometheus.Gauge
	refused            *prometheus.CounterVec // kind

	mu   sync.Mutex       // guards used, per, peak and every readClaim's n
	used int64            // bytes claimed, in all
	per  map[string]int64 // bytes claimed by registry; an entry goes at zero
	peak int64            // the most ever claimed at once, for tests
}

func newReadMemory(total int64, m *metrics.Metrics) *readMemory {
	return &readMemory{total: total, perRegistry: total / 4, inUse: m.ReadMemoryBytes, refused: m.ReadMemoryRefused,
		per: map[string]int64{}}
}

// claim starts a claim of registry's, holding nothing yet.
func (b *readMemory) claim(registry string) *readClaim {
	return &readClaim{b: b, registry: registry}
}

// forCopy claims n bytes at once for registry, for a copy into the memory
// tier of content the cache holds (its size is its own, not a registry's
// word), or returns nil, counting the copy as refused, without room.
func (b *readMemory) forCopy(registry string, n int64) *readClaim {
	c := b.claim(registry)
	if c.grow(n, "memory") != nil {
		return nil
	}
	return c
}

// highWater is the most that was ever claimed at once.
func (b *readMemory) highWater() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// inUseBy is what registry holds now ("" for all registries).
func (b *readMemory) inUseBy(registry string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if registry == "" {
		return b.used
	}
	return b.per[registry]
}

// readClaim is what one read holds of the budget. Its methods are safe
// for concurrent use: the server may release a listing's claim on another
// goroutine than the one that read it.
type readClaim struct {
	b        *readMemory
	registry string
	n        int64 // guarded by b.mu
}

// grow claims n bytes more, or fails at once with errFull's answer when
// they do not fit in the budget or in the registry's quarter, counting the
// refusal under kind.
func (c *readClaim) grow(n int64, kind string) error {
	b := c.b
	b.mu.Lock()
	used, mine := b.used, b.per[c.registry]
	if used+n > b.total || mine+n > b.perRegistry {
		b.mu.Unlock()
		b.refused.WithLabelValues(kind).Inc()
		return b.errFull(c.registry, used, mine)
	}
	b.used += n
	b.per[c.registry] += n
	b.peak = max(b.peak, b.used)
	c.n += n
	b.mu.Unlock()
	b.inUse.Add(float64(n))
	return nil
}

// shrink gives back n of the bytes claimed.
func (c *readClaim) shrink(n int64) {
	b := c.b
	b.mu.Lock()
	n = min(n, c.n)
	c.n -= n
	b.used -= n
	if b.per[c.registry] -= n; b.per[c.registry] <= 0 {
		delete(b.per, c.registry)
	}
	b.mu.Unlock()
	b.inUse.Sub(float64(n))
}

// release gives back everything claimed. It may be called more than once.
func (c *readClaim) release() {
	if c != nil {
		c.shrink(1<<63 - 1)
	}
}

// errFull is the answer to a request whose read found no room: the
// registry's quarter or the whole budget is held by reads in progress.
func (b *readMemory) errFull(registry string, used, mine int64) error {
	return &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, RetryAfterHeader: "1",
		Message: fmt.Sprintf("read memory full: manifests and listings read whole hold %d KiB of registry %s's %d KiB "+
			"(%d KiB of %d KiB in all); try again", mine>>10, registry, b.perRegistry>>10, used>>10, b.total>>10)}
}

// wholeRead is a body read whole within the budget: its bytes in pieces of
// readStep, all full but the last, each claimed before it was read into.
type wholeRead struct {
	pieces [][]byte
	n      int64
	claim  *readClaim
}

// readWhole reads body to its end, at most limit bytes, for registry. A
// body longer than limit fails with oci.ErrTooLarge, a claim that does not
// fit with errFull's answer (counted under kind), a failed read with its
// error. On failure nothing stays claimed; on success the caller releases
// w once it no longer holds its bytes.
func (b *readMemory) readWhole(body io.Reader, registry string, limit int64, kind string) (_ *wholeRead, err error) {
	w := &wholeRead{claim: b.claim(registry)}
	defer func() {
		if err != nil {
			w.release()
		}
	}()
	tooLarge := func() error { return oci.ErrTooLarge(fmt.Sprintf("%s body exceeds %d bytes", kind, limit)) }
	var probe [1]byte
	for {
		last := len(w.pieces) - 1
		if last < 0 || len(w.pieces[last]) == readStep {
			// The pieces are full. One byte more, read before a step is
			// claimed for it, tells a body that ends here from one that
			// goes on: the end claims nothing.
			m, err := io.ReadFull(body, probe[:])
			switch {
			case m == 0 && errors.Is(err, io.EOF):
				return w, nil
			case m == 0:
				return nil, err
			case w.n >= limit:
				return nil, tooLarge()
			}
			if err := w.claim.grow(readStep, kind); err != nil {
				return nil, err
			}
			w.pieces = append(w.pieces, append(make([]byte, 0, readStep), probe[0]))
			w.n++
			last++
		}
		p := w.pieces[last]
		m, err := body.Read(p[len(p):readStep])
		w.pieces[last] = p[:len(p)+m]
		w.n += int64(m)
		switch {
		case w.n > limit:
			return nil, tooLarge()
		case errors.Is(err, io.EOF):
			return w, nil
		case err != nil:
			return nil, err
		}
	}
}

// Len is the number of bytes read.
func (w *wholeRead) Len() int64 { return w.n }

// reader reads the bytes read.
func (w *wholeRead) reader() io.Reader {
	rs := make([]io.Reader, len(w.pieces))
	for i, p := range w.pieces {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}

// digest is the sha256 digest of the bytes read.
func (w *wholeRead) digest() oci.Digest {
	h := sha256.New()
	for _, p := range w.pieces {
		h.Write(p)
	}
	return oci.Digest(fmt.Sprintf("sha256:%x", h.Sum(nil)))
}

// bytes returns the bytes read as one slice of their exact length, and
// drops the pieces. Unless they are one full piece, that takes a copy,
// claimed before it is made (counted under kind when it does not fit);
// then the pieces' claim is given back and w's claim holds the copy's.
func (w *wholeRead) bytes(kind string) ([]byte, error) {
	switch {
	case len(w.pieces) == 0:
		return []byte{}, nil
	case len(w.pieces) == 1 && len(w.pieces[0]) == cap(w.pieces[0]):
		return w.pieces[0], nil // a full piece, or the copy already made
	}
	if err := w.claim.grow(w.n, kind); err != nil {
		return nil, err
	}
	data := make([]byte, 0, w.n)
	for _, p := range w.pieces {
		data = append(data, p...)
	}
	pieces := int64(len(w.pieces))
	w.pieces = [][]byte{data}
	w.claim.shrink(pieces * readStep)
	return data, nil
}

// release gives back the claim and drops the bytes.
func (w *wholeRead) release() {
	w.pieces = nil
	w.claim.release()
}
