// Package memory is cacheyd's memory tier: manifests and small blobs held in
// ristretto, keyed by digest, with a cost in bytes under a budget.
// Ristretto admits by frequency (TinyLFU), so one large scan does not flush
// the hot manifests, and a Put may be declined: another tier is expected to
// hold everything, so a refusal costs a read from it, not a fetch.
//
// It is the only package that knows ristretto. It knows nothing of fills,
// HTTP or policy: what it may hold is the cache's decision.
package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// Config configures a Memory.
type Config struct {
	// Bytes is the budget. Zero or less disables the tier: New returns nil,
	// and a nil *Memory holds nothing.
	Bytes int64
	// MaxObject is the largest object kept, in bytes. Zero means 1 MiB.
	MaxObject int64
	// Metrics receives the bytes held. Nil means nowhere.
	Metrics *metrics.Metrics
}

// item is one object held.
type item struct {
	data []byte
	e    tier.Entry
}

// Memory is the memory tier; nil is a disabled one. Its methods are safe for
// concurrent use.
type Memory struct {
	// setMu serializes Sets, so that a record merged with what is held is
	// not lost to a concurrent Set of the same digest (ristretto applies a
	// new key's Set later, on its own goroutine).
	setMu     sync.Mutex
	c         *ristretto.Cache[string, item]
	maxObject int64
	m         *metrics.Metrics
}

var _ tier.Tier = (*Memory)(nil)

// entryOverhead approximates what an entry costs beyond its bytes, so that
// many tiny objects cannot exceed the budget unnoticed.
const entryOverhead = 128

// New returns the memory tier for cfg, or nil when it is disabled.
func New(cfg Config) (*Memory, error) {
	if cfg.Bytes <= 0 {
		return nil, nil
	}
	if cfg.MaxObject <= 0 {
		cfg.MaxObject = 1 << 20
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	// Counters: ten per object of an assumed average 16 KiB, as ristretto
	// advises ten times the expected item count.
	counters := max(cfg.Bytes/(16<<10)*10, 1000)
	c, err := ristretto.NewCache(&ristretto.Config[string, item]{
		NumCounters:        counters,
		MaxCost:            cfg.Bytes,
		BufferItems:        64,
		Metrics:            true, // read by used(), for the memory gauge
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("memory tier: %w", err)
	}
	return &Memory{c: c, maxObject: cfg.MaxObject, m: cfg.Metrics}, nil
}

// Fits reports whether an object of size bytes may be kept.
func (t *Memory) Fits(size int64) bool {
	return t != nil && size >= 0 && size <= t.maxObject
}

// Get returns the shared, read-only bytes of dg and its record: the hit
// path, without an allocation.
func (t *Memory) Get(dg oci.Digest) ([]byte, tier.Entry, bool) {
	if t == nil {
		return nil, tier.Entry{}, false
	}
	it, ok := t.c.Get(string(dg))
	return it.data, it.e, ok
}

// Set offers verified bytes; ristretto may decline them.
func (t *Memory) Set(e tier.Entry, data []byte) bool {
	if !t.Fits(int64(len(data))) || int64(len(data)) != e.Size {
		return false
	}
	t.setMu.Lock()
	defer t.setMu.Unlock()
	if old, ok := t.c.Get(string(e.Digest)); ok {
		e = tier.Merge(old.e, e)
	}
	ok := t.c.Set(string(e.Digest), item{data: data, e: e}, int64(len(data))+entryOverhead)
	t.c.Wait() // applied before the next Set looks
	t.m.MemoryBytes.Set(float64(t.Used()))
	return ok
}

// Stat returns dg's record.
func (t *Memory) Stat(_ context.Context, dg oci.Digest) (tier.Entry, error) {
	_, e, ok := t.Get(dg)
	if !ok {
		return tier.Entry{}, fmt.Errorf("memory: %s: %w", dg.Short(), tier.ErrNotFound)
	}
	return e, nil
}

// Open returns dg's content, which has Bytes() []byte.
func (t *Memory) Open(_ context.Context, dg oci.Digest) (tier.Content, tier.Entry, error) {
	data, e, ok := t.Get(dg)
	if !ok {
		return nil, tier.Entry{}, fmt.Errorf("memory: %s: %w", dg.Short(), tier.ErrNotFound)
	}
	return &Bytes{Reader: bytes.NewReader(data), data: data}, e, nil
}

// Put reads and verifies r's e.Size bytes and offers them.
func (t *Memory) Put(_ context.Context, e tier.Entry, r io.Reader) (tier.Entry, error) {
	if !t.Fits(e.Size) {
		return tier.Entry{}, fmt.Errorf("memory: %s of %d bytes: %w", e.Digest.Short(), e.Size, tier.ErrDeclined)
	}
	data := make([]byte, e.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = tier.ErrMismatch
		}
		return tier.Entry{}, fmt.Errorf("memory: put %s: %w", e.Digest.Short(), err)
	}
	var probe [1]byte
	if n, _ := r.Read(probe[:]); n > 0 || !matches(e.Digest, data) {
		return tier.Entry{}, fmt.Errorf("memory: put %s: %w", e.Digest.Short(), tier.ErrMismatch)
	}
	if !t.Set(e, data) {
		return tier.Entry{}, fmt.Errorf("memory: %s: %w", e.Digest.Short(), tier.ErrDeclined)
	}
	if _, held, ok := t.Get(e.Digest); ok {
		return held, nil
	}
	return tier.Entry{}, fmt.Errorf("memory: %s: %w", e.Digest.Short(), tier.ErrDeclined)
}

// Delete forgets dg.
func (t *Memory) Delete(_ context.Context, dg oci.Digest) error {
	if t != nil {
		t.c.Del(string(dg))
		t.c.Wait()
		t.m.MemoryBytes.Set(float64(t.Used()))
	}
	return nil
}

// Used is the cost the tier holds now.
func (t *Memory) Used() int64 {
	if t == nil {
		return 0
	}
	mt := t.c.Metrics
	return int64(mt.CostAdded()) - int64(mt.CostEvicted())
}

// Wait blocks until pending sets are applied (ristretto applies them
// asynchronously); tests use it to make hits deterministic.
func (t *Memory) Wait() {
	if t != nil {
		t.c.Wait()
	}
}

// Close releases the tier.
func (t *Memory) Close() {
	if t != nil {
		t.c.Close()
	}
}

// Bytes is content held in memory.
type Bytes struct {
	*bytes.Reader
	data []byte
}

// Bytes returns the shared, read-only content.
func (b *Bytes) Bytes() []byte { return b.data }

// Close does nothing.
func (b *Bytes) Close() error { return nil }

func matches(dg oci.Digest, data []byte) bool {
	h := dg.NewHash()
	h.Write(data)
	return dg.Matches(h)
}
