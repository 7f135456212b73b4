package flight

import "sort"

// spans is a set of byte ranges, kept sorted and merged: the bytes of a
// flight written so far.
type spans []span

// span is the bytes [start, end).
type span struct{ start, end int64 }

// add inserts [start, end), which must not overlap what is held, merging it
// with the neighbours it touches. It reports false on an overlap.
func (s *spans) add(start, end int64) bool {
	if start >= end {
		return true
	}
	if s.overlaps(start, end) {
		return false
	}
	ss := *s
	// i is the first span that ends at or after start: the left
	// neighbour if it touches start, else the first span after.
	i := sort.Search(len(ss), func(i int) bool { return ss[i].end >= start })
	switch {
	case i < len(ss) && ss[i].end == start && i+1 < len(ss) && ss[i+1].start == end:
		ss[i].end = ss[i+1].end
		ss = append(ss[:i+1], ss[i+2:]...)
	case i < len(ss) && ss[i].end == start:
		ss[i].end = end
	case i < len(ss) && ss[i].start == end:
		ss[i].start = start
	default:
		ss = append(ss, span{})
		copy(ss[i+1:], ss[i:])
		ss[i] = span{start, end}
	}
	*s = ss
	return true
}

// overlaps reports whether any byte of [start, end) is held.
func (s spans) overlaps(start, end int64) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].end > start })
	return i < len(s) && s[i].start < end
}

// reach returns the end of the written bytes that run without a gap from
// off, or off itself when the byte at off is not written.
func (s spans) reach(off int64) int64 {
	i := sort.Search(len(s), func(i int) bool { return s[i].end > off })
	if i < len(s) && s[i].start <= off {
		return s[i].end
	}
	return off
}

// missing returns the first gap at or after off, up to end: the bytes
// [start, stop) a writer should fetch next for a reader at off.
func (s spans) missing(off, end int64) (start, stop int64) {
	start = s.reach(off)
	stop = end
	i := sort.Search(len(s), func(i int) bool { return s[i].start > start })
	if i < len(s) && s[i].start < stop {
		stop = s[i].start
	}
	return start, stop
}

// total is the number of bytes held.
func (s spans) total() int64 {
	var n int64
	for _, sp := range s {
		n += sp.end - sp.start
	}
	return n
}
