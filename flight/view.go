package flight

// What a writer that fetches in regions reads of its flight: who is
// reading, what is written, when a reader strands. Where readers wait
// decides what it claims next (claims.go).

// Readers reports, while the writer holds its reference (before Finish),
// how many other references are held: the requests reading the flight or
// waiting to. Zero means nobody would miss the flight if it ended now.
func (f *Flight) Readers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refs - 1
}

// Progress reports how many bytes have been written so far.
func (f *Flight) Progress() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written.total()
}

// Stranded returns a channel closed when a reader next begins waiting at
// a byte that no write in progress is heading for: one whose previous byte
// is not written either (a Range read into the middle of the object, say),
// unlike a reader at the tail of bytes being written. A writer that fetches
// in regions uses it to fetch such a reader's bytes at once rather than
// after the regions it has in hand; sequential readers never close it.
func (f *Flight) Stranded() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stranded == nil {
		f.stranded = make(chan struct{})
	}
	return f.stranded
}

// Written reports the end of the bytes written without a gap from off
// (off itself if the byte at off is not written), and the first gap at or
// after off up to end, for a writer that fetches what a reader needs next.
func (f *Flight) Written(off, end int64) (reach, gapStart, gapEnd int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gapStart, gapEnd = f.written.missing(off, end)
	return f.written.reach(off), gapStart, gapEnd
}
