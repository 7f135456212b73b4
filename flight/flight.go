package flight

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// File is what a flight writes to and reads from: its pending file. Writes
// at distinct offsets may come from several goroutines at once.
type File interface {
	io.ReaderAt
	io.WriterAt
}

// Errors a flight's writer and readers see.
var (
	// ErrAborted is what readers see of a flight that failed without a
	// more specific cause.
	ErrAborted = errors.New("flight: aborted")
	// ErrOverlap refuses a write of bytes already written.
	ErrOverlap = errors.New("flight: bytes written twice")
	// ErrBeyondSize refuses a write past the object's size.
	ErrBeyondSize = errors.New("flight: write beyond the object's size")
	// ErrMismatch is Verify's verdict on bytes that are not the digest's.
	ErrMismatch = errors.New("digest mismatch")
)

// Flight is one object in flight. The zero value is not usable: use New.
//
// Its life: New (readers may wait) → Open (the writer knows the size and
// has a file: readers read) → WriteAt, any number of times → Verify (the
// writer checks the whole object) → Finish(nil) releases every reader's
// last byte; Finish(err) at any stage aborts every reader.
type Flight struct {
	digest oci.Digest

	// ready is closed by Open, or by Finish before Open. file and size
	// are written before it is closed and only read after.
	ready chan struct{}
	file  File
	size  int64 // -1 when the object's size is unknown until Verify

	hashMu sync.Mutex // held by the one goroutine hashing; guards h and scratch
	h      hash.Hash  // over [0, prefix)
	// scratch reads back chunks that were written ahead of the prefix.
	scratch []byte

	mu      sync.Mutex // guards everything below
	written spans
	// claimed holds the bytes the writer's requests are heading for
	// (claims.go), in ascending order; they never overlap.
	claimed []Span
	prefix  int64 // bytes [0, prefix) are hashed
	hashing bool  // a goroutine is extending prefix
	// hashIdle, when not nil, is closed when hashing stops: Verify waits
	// on it, so that hashing need not wake the readers.
	hashIdle chan struct{}
	final    int64 // the size Verify accepted; -1 before
	done     bool  // Finish was called: err says how it ended
	err      error
	// notify is closed and replaced to wake the waiting readers (see
	// wakeDueLocked), so that a reader waits on it without holding mu.
	notify chan struct{}
	// waiting holds the readers waiting for bytes, for the writer to wake
	// them when it is worth it and to fetch first what they need.
	waiting map[*reader]struct{}
	// stranded, when not nil, is closed when a reader begins waiting at a
	// byte with no written byte before it (Stranded).
	stranded chan struct{}
	// refs counts the writer and every reader; release runs when it drops
	// to zero (after Open: it closes the file).
	refs    int
	release func()
}

// New starts a flight of the object named by digest. The caller holds the
// writer's reference, which Finish gives up.
func New(digest oci.Digest) *Flight {
	return &Flight{digest: digest, ready: make(chan struct{}), size: -1, final: -1,
		h: digest.NewHash(), notify: make(chan struct{}), refs: 1}
}

// Digest names the object.
func (f *Flight) Digest() oci.Digest { return f.digest }

// Open gives the flight its file and the object's size (-1: unknown, then
// the bytes must be written in order), and lets readers read. release runs
// once every reference is gone; it typically closes the file.
func (f *Flight) Open(file File, size int64, release func()) {
	f.file, f.size = file, size
	f.mu.Lock()
	f.release = release
	f.mu.Unlock()
	close(f.ready)
}

// Wait waits until the flight is open (nil) or failed before that (its
// error); ctx ends only this wait, with its cause.
func (f *Flight) Wait(ctx context.Context) error {
	select {
	case <-f.ready:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if f.file == nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.errLocked()
	}
	return nil
}

// Size is the object's size, -1 when unknown. Only after Wait returned nil.
func (f *Flight) Size() int64 { return f.size }

func (f *Flight) errLocked() error {
	if f.err != nil {
		return f.err
	}
	return ErrAborted
}

// WriteAt writes p at off into the file and makes it readable. Bytes are
// written once: a write over bytes already written fails with ErrOverlap,
// and without a known size writes must follow one another. Only the
// writer calls it, from as many goroutines as it likes.
func (f *Flight) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	f.mu.Lock()
	switch {
	case f.done:
		f.mu.Unlock()
		return 0, f.errLocked()
	case off < 0 || (f.size >= 0 && end > f.size):
		f.mu.Unlock()
		return 0, fmt.Errorf("%w: %d bytes at %d of %d", ErrBeyondSize, len(p), off, f.size)
	case f.size < 0 && off != f.written.reach(0):
		f.mu.Unlock()
		return 0, fmt.Errorf("flight: %d bytes at %d: without a size, writes must follow one another", len(p), off)
	case f.written.overlaps(off, end):
		f.mu.Unlock()
		return 0, fmt.Errorf("%w: [%d, %d)", ErrOverlap, off, end)
	}
	f.mu.Unlock()
	n, err := f.file.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	f.mu.Lock()
	if !f.written.add(off, end) {
		f.mu.Unlock() // two writers raced for the same bytes
		return n, fmt.Errorf("%w: [%d, %d)", ErrOverlap, off, end)
	}
	f.wakeDueLocked()
	f.mu.Unlock()
	f.hashPrefix(p, off)
	return n, nil
}

// hashPrefix extends the hashed prefix over what is now written without a
// gap from it. p, just written at off, is hashed from memory when it is
// where the prefix stands; chunks written ahead are read back from the file.
// One goroutine hashes at a time; another that finds it busy leaves the
// work to it.
func (f *Flight) hashPrefix(p []byte, off int64) {
	f.mu.Lock()
	if f.hashing {
		f.mu.Unlock()
		return
	}
	f.hashing = true
	for {
		from, to := f.prefix, f.written.reach(f.prefix)
		if to <= from {
			break
		}
		f.mu.Unlock()
		err := f.hashRange(from, to, p, off)
		f.mu.Lock()
		if err != nil {
			// The file cannot be read back: the object cannot be verified.
			f.finishLocked(fmt.Errorf("flight: hash %s: %w", f.digest.Short(), err))
			break
		}
		f.prefix = to
	}
	f.hashing = false
	if f.hashIdle != nil {
		close(f.hashIdle)
		f.hashIdle = nil
	}
	f.mu.Unlock()
}

// hashRange hashes [from, to), taking the part that is p (written at off)
// from memory.
func (f *Flight) hashRange(from, to int64, p []byte, off int64) error {
	f.hashMu.Lock()
	defer f.hashMu.Unlock()
	for from < to {
		if off <= from && from < off+int64(len(p)) {
			n := min(to, off+int64(len(p))) - from
			f.h.Write(p[from-off : from-off+n])
			from += n
			continue
		}
		if f.scratch == nil {
			f.scratch = make([]byte, 64<<10)
		}
		n := min(int64(len(f.scratch)), to-from)
		if off > from {
			n = min(n, off-from) // up to p, which is hashed from memory
		}
		m, err := f.file.ReadAt(f.scratch[:n], from)
		if int64(m) < n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		f.h.Write(f.scratch[:n])
		from += n
	}
	return nil
}

// Verify checks the whole object once every write has returned: size is
// what the writer received in all (it must be the size Open was given, if
// that was known), and the bytes written must be exactly [0, size) and
// match the digest. It does not release the readers: Finish does.
func (f *Flight) Verify(size int64) error {
	f.mu.Lock()
	for f.hashing { // a write's hashing may still run after it returned
		if f.hashIdle == nil {
			f.hashIdle = make(chan struct{})
		}
		idle := f.hashIdle
		f.mu.Unlock()
		<-idle
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	switch {
	case f.done:
		return f.errLocked()
	case f.size >= 0 && size != f.size:
		return fmt.Errorf("flight: %d bytes in all, announced %d", size, f.size)
	case f.prefix != size || len(f.written) > 1:
		return fmt.Errorf("flight: bytes [0, %d) of %d written in one piece", f.prefix, size)
	}
	f.hashMu.Lock()
	ok := f.digest.Matches(f.h)
	f.hashMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: content is not %s", ErrMismatch, f.digest.Short())
	}
	f.final = size
	return nil
}

// Finish ends the flight and gives up the writer's reference. With nil,
// which needs a successful Verify first, every reader may read to the end;
// otherwise every reader, waiting or to come, fails with err.
func (f *Flight) Finish(err error) {
	f.mu.Lock()
	if err == nil && f.final < 0 {
		err = errors.New("flight: finished without a verified object")
	}
	f.finishLocked(err)
	opened := f.file != nil
	f.mu.Unlock()
	if !opened {
		select {
		case <-f.ready:
		default:
			close(f.ready)
		}
	}
	f.Release()
}

func (f *Flight) finishLocked(err error) {
	if f.done {
		return
	}
	f.done, f.err = true, err
	f.wakeLocked()
}

// Waking every reader at every write would cost each of them a wakeup and
// a send per write (a fill writes 128 KiB at a time, to 16 readers in a
// burst), so the writer wakes the waiting readers only when one of them has
// wakeRun bytes to send, or its window's last bytes, or is eager: it has
// not sent its first bytes yet (the first byte is never delayed), or it
// waited wakeDelay already. A reader that is not eager waits at most
// wakeDelay before it looks for itself.
const (
	wakeRun   = 512 << 10
	wakeDelay = 10 * time.Millisecond
)

// wakeDueLocked wakes the waiting readers if one of them is due (see
// wakeRun).
func (f *Flight) wakeDueLocked() {
	for r := range f.waiting {
		reach := f.written.reach(r.off)
		if reach <= r.off {
			continue
		}
		end := r.end
		if end < 0 {
			end = f.size // -1 when unknown: never reached
		}
		if r.eager || reach-r.off >= wakeRun || (end >= 0 && reach >= end) {
			f.wakeLocked()
			return
		}
	}
}

// wakeLocked wakes every waiting reader.
func (f *Flight) wakeLocked() {
	close(f.notify)
	f.notify = make(chan struct{})
}

// Acquire takes a reference for a reader. It fails once the last reference
// is gone, which cannot happen while the writer holds its own.
func (f *Flight) Acquire() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs == 0 {
		return false
	}
	f.refs++
	return true
}

// Release drops a reference; the last one runs Open's release.
func (f *Flight) Release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	release := f.release
	f.mu.Unlock()
	if last && release != nil {
		release()
	}
}
