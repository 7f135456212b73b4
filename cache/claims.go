package cache

import "sort"

// The claims of a chunker: which regions of its object a request is
// fetching, so that each byte has one writer, and which region comes next.

// next claims the next region to fetch, or reports false when every byte
// is written or claimed.
func (k *chunker) next() (span, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.noRange {
		return span{}, false
	}
	for _, at := range append(k.f.Wanted(), 0) {
		if s, ok := k.gapLocked(at); ok {
			s.end = min(s.end, s.start+k.chunk)
			k.claimLocked(s)
			return s, true
		}
	}
	return span{}, false
}

// nextStranded claims the region at a waiting reader's next byte when that
// byte is neither written nor claimed (no request is heading for it), or
// reports false.
func (k *chunker) nextStranded() (span, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.noRange {
		return span{}, false
	}
	for _, at := range k.f.Wanted() {
		if s, ok := k.gapLocked(at); ok && s.start == at {
			s.end = min(s.end, s.start+k.chunk)
			k.claimLocked(s)
			return s, true
		}
	}
	return span{}, false
}

// gapLocked returns the first bytes at or after at that are neither
// written nor claimed.
func (k *chunker) gapLocked(at int64) (span, bool) {
	for at < k.size {
		_, start, end := k.f.Written(at, k.size)
		if start >= end {
			return span{}, false
		}
		moved := false
		for _, c := range k.claimed {
			switch {
			case c.start <= start && start < c.end:
				at, moved = c.end, true
			case start < c.start && c.start < end:
				end = c.start
			}
			if moved {
				break
			}
		}
		if !moved {
			return span{start, end}, true
		}
	}
	return span{}, false
}

func (k *chunker) claimLocked(s span) {
	k.claimed = append(k.claimed, s)
	sort.Slice(k.claimed, func(i, j int) bool { return k.claimed[i].start < k.claimed[j].start })
}

// done gives a claim back once its bytes are written, or on failure.
func (k *chunker) done(s span) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, c := range k.claimed {
		if c == s {
			k.claimed = append(k.claimed[:i], k.claimed[i+1:]...)
			return
		}
	}
}

// extend grows the claim of stream id, whose body runs to the end of the
// object, past its end: by a chunk while the bytes after are neither
// written nor claimed; or, once the origin is known to ignore ranges and
// this stream is the one that carries on, to the next bytes nobody has,
// wherever they start (the stream then skips to them). It reports false
// when the stream should stop. Claims never overlap, so that each byte has
// one writer.
func (k *chunker) extend(s *span, id int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := *s
	g, ok := k.gapLocked(s.end)
	switch {
	case !ok:
		return false
	case k.noRange:
		if k.owner != 0 && k.owner != id {
			return false
		}
		k.owner = id
		*s = g
	case g.start != s.end:
		return false
	default:
		s.end = min(g.end, s.end+k.chunk)
	}
	k.replaceLocked(old, *s)
	return true
}

func (k *chunker) replaceLocked(old, s span) {
	for i, c := range k.claimed {
		if c == old {
			k.claimed[i] = s
			return
		}
	}
}
