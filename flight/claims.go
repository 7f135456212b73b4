package flight

import (
	"cmp"
	"slices"
)

// Claims are for a writer that fetches its object in regions, several
// requests at once: a claim is the bytes one of its requests is heading
// for, so that each byte has one request. They are kept beside the written
// bytes, under the same lock, so that "neither written nor claimed" is one
// question with one answer however many requests ask it at once. A claim
// is named by its value: claims never overlap, so no two are equal. Claims
// need the object's size: before Open, or when the size is unknown, there
// are no bytes to claim.

// Span is the bytes [Start, End) of the object.
type Span struct{ Start, End int64 }

// Len is the number of bytes in s.
func (s Span) Len() int64 { return s.End - s.Start }

// Claim claims s for one of the writer's requests. It reports false, and
// claims nothing, when s is empty, lies outside the object, or holds a byte
// written or claimed already.
func (f *Flight) Claim(s Span) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Start < 0 || s.Start >= s.End || s.End > f.size || f.written.overlaps(s.Start, s.End) || f.claimedLocked(s) {
		return false
	}
	f.claimLocked(s)
	return true
}

// ClaimNext claims the next bytes to fetch, at most n of them: the first
// bytes neither written nor claimed at or after a waiting reader's next
// byte, the lowest such reader first, or else at or after byte 0. It
// reports false when every byte is written or claimed.
func (f *Flight) ClaimNext(n int64) (Span, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, at := range append(f.wantedLocked(), 0) {
		if s, ok := f.gapLocked(at); ok {
			s.End = min(s.End, s.Start+n)
			f.claimLocked(s)
			return s, true
		}
	}
	return Span{}, false
}

// ClaimStranded claims at most n bytes from a waiting reader's next byte
// when that byte is neither written nor claimed (no request is heading for
// it), the lowest such reader first. It reports false when there is none.
func (f *Flight) ClaimStranded(n int64) (Span, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, at := range f.wantedLocked() {
		if s, ok := f.gapLocked(at); ok && s.Start == at {
			s.End = min(s.End, s.Start+n)
			f.claimLocked(s)
			return s, true
		}
	}
	return Span{}, false
}

// Extend grows claim s by at most n bytes past its end, when the bytes
// right after it are neither written nor claimed, and returns the claim it
// became; it reports false, leaving s as it was, otherwise. s may be empty
// (claimed by nobody): the bytes after it are then claimed afresh.
func (f *Flight) Extend(s Span, n int64) (Span, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gapLocked(s.End)
	if !ok || g.Start != s.End {
		return s, false
	}
	grown := Span{s.Start, min(g.End, s.End+n)}
	if s.Start == s.End {
		grown.Start = g.Start
	}
	f.replaceLocked(s, grown)
	return grown, true
}

// Skip moves claim s to the first bytes at or after its end that are
// neither written nor claimed, all of them up to the next byte that is:
// for a request whose answer runs to the end of the object (an origin that
// ignores ranges sends it whole), which reads past what others have to get
// there. It reports false, leaving s as it was, when no such bytes are
// left.
func (f *Flight) Skip(s Span) (Span, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.gapLocked(s.End)
	if !ok {
		return s, false
	}
	f.replaceLocked(s, g)
	return g, true
}

// Unclaim gives claim s back, once its bytes are written or its request
// failed; the bytes it did not write are then anyone's to claim.
func (f *Flight) Unclaim(s Span) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := slices.Index(f.claimed, s); i >= 0 {
		f.claimed = slices.Delete(f.claimed, i, i+1)
	}
}

// Writable returns the first bytes of [off, end) that are neither written
// nor claimed by another claim than own: what the request holding own
// writes next of the bytes it has in hand. It returns an empty span at end
// when there are none.
func (f *Flight) Writable(own Span, off, end int64) Span {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g, ok := f.freeLocked(off, end, own); ok {
		return g
	}
	return Span{end, end}
}

// Claims returns the claims held, in ascending order.
func (f *Flight) Claims() []Span {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.claimed)
}

// gapLocked returns the first bytes at or after at that are neither
// written nor claimed, all of them up to the next byte that is.
func (f *Flight) gapLocked(at int64) (Span, bool) {
	return f.freeLocked(at, f.size, Span{})
}

// freeLocked returns the first bytes of [off, end) that are neither
// written nor claimed by another claim than own (the zero Span: none), all
// of them up to the next byte that is.
func (f *Flight) freeLocked(off, end int64, own Span) (Span, bool) {
	for off < end {
		start, stop := f.written.missing(off, end)
		if start >= stop {
			return Span{}, false
		}
		moved := false
		for _, c := range f.claimed {
			if c == own {
				continue
			}
			if c.Start <= start && start < c.End {
				off, moved = c.End, true
				break
			}
			if start < c.Start && c.Start < stop {
				stop = c.Start
			}
		}
		if !moved {
			return Span{start, stop}, true
		}
	}
	return Span{}, false
}

// claimedLocked reports whether a byte of s is claimed.
func (f *Flight) claimedLocked(s Span) bool {
	for _, c := range f.claimed {
		if c.Start < s.End && s.Start < c.End {
			return true
		}
	}
	return false
}

// claimLocked adds s to the claims, kept in ascending order.
func (f *Flight) claimLocked(s Span) {
	i, _ := slices.BinarySearchFunc(f.claimed, s.Start, func(c Span, at int64) int { return cmp.Compare(c.Start, at) })
	f.claimed = slices.Insert(f.claimed, i, s)
}

// replaceLocked puts claim s in the place of old, which may be unclaimed.
func (f *Flight) replaceLocked(old, s Span) {
	if i := slices.Index(f.claimed, old); i >= 0 {
		f.claimed = slices.Delete(f.claimed, i, i+1)
	}
	f.claimLocked(s)
}

// wantedLocked returns the offsets readers are waiting at, in ascending
// order, for a writer that fetches first what readers need.
func (f *Flight) wantedLocked() []int64 {
	out := make([]int64, 0, len(f.waiting))
	for r := range f.waiting {
		out = append(out, r.off)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
