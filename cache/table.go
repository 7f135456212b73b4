package cache

import "sync"

// table is a bounded map of the last answers of lookups (tags.go,
// listing.go): at most maxLen entries of at most maxBytes in all, as size
// counts them. Past a bound arbitrary entries are dropped: a dropped answer
// costs one upstream request, nothing more, so no order is kept.
type table[K comparable, V any] struct {
	maxLen, maxBytes int
	size             func(V) int // nil: entries count for no bytes

	mu    sync.Mutex // guards m and bytes
	m     map[K]V
	bytes int // sum of size over m
}

func newTable[K comparable, V any](maxLen, maxBytes int, size func(V) int) *table[K, V] {
	return &table[K, V]{maxLen: maxLen, maxBytes: maxBytes, size: size, m: map[K]V{}}
}

func (t *table[K, V]) sizeOf(v V) int {
	if t.size == nil {
		return 0
	}
	return t.size(v)
}

func (t *table[K, V]) get(k K) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[k]
	return v, ok
}

// put keeps v for k, replacing what k had, and drops arbitrary other
// entries until both bounds hold.
func (t *table[K, V]) put(k K, v V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.m[k]; ok {
		t.bytes -= t.sizeOf(old)
		delete(t.m, k)
	}
	n := t.sizeOf(v)
	for old, ov := range t.m {
		if len(t.m) < t.maxLen && (t.maxBytes <= 0 || t.bytes+n <= t.maxBytes) {
			break
		}
		t.bytes -= t.sizeOf(ov)
		delete(t.m, old)
	}
	t.m[k] = v
	t.bytes += n
}
