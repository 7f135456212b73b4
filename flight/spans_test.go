package flight

import (
	"math/rand/v2"
	"testing"
)

// TestSpansAgainstABitmap: random disjoint inserts keep the set sorted and
// merged, refuse overlaps, and answer reach and missing as a bitmap would.
func TestSpansAgainstABitmap(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		const size = 200
		var bits [size]bool
		var s spans
		for range 300 {
			start := rng.Int64N(size)
			end := start + 1 + rng.Int64N(min(20, size-start))
			free := true
			for i := start; i < end; i++ {
				free = free && !bits[i]
			}
			if got := s.add(start, end); got != free {
				t.Fatalf("seed %d: add(%d, %d) = %v, want %v (spans %v)", seed, start, end, got, free, s)
			}
			if free {
				for i := start; i < end; i++ {
					bits[i] = true
				}
			}
			for i := 1; i < len(s); i++ {
				if s[i-1].end >= s[i].start {
					t.Fatalf("seed %d: spans not sorted and merged: %v", seed, s)
				}
			}
		}
		for off := int64(0); off < size; off++ {
			want := off
			for want < size && bits[want] {
				want++
			}
			if got := s.reach(off); got != want {
				t.Fatalf("seed %d: reach(%d) = %d, want %d", seed, off, got, want)
			}
			gs, ge := s.missing(off, size)
			ws := want
			we := ws
			for we < size && !bits[we] {
				we++
			}
			if gs != ws || ge != we {
				t.Fatalf("seed %d: missing(%d) = [%d, %d), want [%d, %d)", seed, off, gs, ge, ws, we)
			}
		}
	}
}
