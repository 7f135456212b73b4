package tier

import (
	"fmt"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// memEntry is one object held in memory.
type memEntry struct {
	data      []byte
	mediaType string // "" for content only known as a blob
}

// memory is the memory tier: ristretto, keyed by digest, cost in bytes.
// Ristretto admits by frequency (TinyLFU), so a Set may be refused; the disk
// tier still holds everything, so a refusal costs a disk read, not a fetch.
type memory struct {
	c         *ristretto.Cache[string, memEntry]
	maxObject int64
	m         *metrics.Metrics
}

// entryOverhead approximates what an entry costs beyond its bytes, so that
// many tiny objects cannot exceed the budget unnoticed.
const entryOverhead = 128

func newMemory(budget, maxObject int64, m *metrics.Metrics) (*memory, error) {
	if budget <= 0 {
		return nil, nil
	}
	// Counters: ten per object of an assumed average 16 KiB, as ristretto
	// advises ten times the expected item count.
	counters := max(budget/(16<<10)*10, 1000)
	c, err := ristretto.NewCache(&ristretto.Config[string, memEntry]{
		NumCounters:        counters,
		MaxCost:            budget,
		BufferItems:        64,
		Metrics:            true, // read by used(), for the memory gauge
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("memory tier: %w", err)
	}
	return &memory{c: c, maxObject: maxObject, m: m}, nil
}

// fits reports whether an object of size bytes may be kept in memory.
func (t *memory) fits(size int64) bool {
	return t != nil && size >= 0 && size <= t.maxObject
}

func (t *memory) get(d oci.Digest) (memEntry, bool) {
	if t == nil {
		return memEntry{}, false
	}
	return t.c.Get(string(d))
}

// set offers an object to the memory tier; ristretto may decline it.
func (t *memory) set(d oci.Digest, e memEntry) {
	if !t.fits(int64(len(e.data))) {
		return
	}
	t.c.Set(string(d), e, int64(len(e.data))+entryOverhead)
	t.m.MemoryBytes.Set(float64(t.used()))
}

// used is the cost the memory tier holds now.
func (t *memory) used() int64 {
	if t == nil {
		return 0
	}
	mt := t.c.Metrics
	return int64(mt.CostAdded()) - int64(mt.CostEvicted())
}

// wait blocks until pending sets are applied (ristretto applies them
// asynchronously); tests use it to make hits deterministic.
func (t *memory) wait() {
	if t != nil {
		t.c.Wait()
	}
}

func (t *memory) close() {
	if t != nil {
		t.c.Close()
	}
}
