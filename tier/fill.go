package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// errFillAborted is what readers of a fill see when it failed without a
// more specific cause (for example the cache shutting down).
var errFillAborted = errors.New("fill aborted")

// fill is one upstream fetch being written into a pending file. Every
// reader, including late joiners and range readers, reads that same file as
// it grows; nothing is buffered per reader.
//
// A fill belongs to the cache, not to the request that started it: it runs
// on the cache's context with a timeout, and a reader that goes away only
// stops its own reading.
type fill struct {
	digest oci.Digest
	kind   oci.Kind

	// ready is closed once the fill knows size and media type (upstream
	// answered) or has failed before that. The fields below it that are not
	// under mu are written before ready is closed and only read after.
	ready     chan struct{}
	size      int64 // -1 when upstream sent no length
	mediaType string
	file      *os.File // the pending file; nil if the fill failed early

	mu      sync.Mutex // guards written, done, err, notify and refs
	written int64
	done    bool  // no more bytes will come
	err     error // why the fill failed; nil after a verified commit
	// notify is closed and replaced whenever written or done changes, so a
	// reader waits on it without holding mu.
	notify chan struct{}
	// refs counts the writer and every reader holding the file open; the
	// file is closed when the count drops to zero.
	refs int
}

func newFill(dg oci.Digest, kind oci.Kind) *fill {
	return &fill{digest: dg, kind: kind, size: -1, ready: make(chan struct{}), notify: make(chan struct{}), refs: 1}
}

// waitReady waits until upstream has answered or the fill failed early.
func (f *fill) waitReady(ctx context.Context) error {
	select {
	case <-f.ready:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		return f.errLocked()
	}
	return nil
}

func (f *fill) errLocked() error {
	if f.err != nil {
		return f.err
	}
	return errFillAborted
}

// acquire takes a reference for a reader. It fails once the file is closed,
// which cannot happen while the fill is still registered with the cache
// (the writer drops its reference only after unregistering).
func (f *fill) acquire() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs == 0 {
		return false
	}
	f.refs++
	return true
}

// release drops a reference and closes the file with the last one.
func (f *fill) release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last && f.file != nil {
		_ = f.file.Close()
	}
}

// advance records n more bytes written and wakes the readers.
func (f *fill) advance(n int64) {
	f.mu.Lock()
	f.written += n
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// finish marks the fill done: err nil means the content was verified (and
// the last byte may now be read); otherwise every reader fails with err.
func (f *fill) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// newReader returns a reader of length bytes from offset (length < 0: to
// the end). It takes over one reference, which its Close releases; ctx ends
// its waiting, and only its own.
func (f *fill) newReader(ctx context.Context, offset, length int64) (io.ReadCloser, error) {
	end := int64(-1)
	if length >= 0 {
		end = offset + length
	}
	return &fillReader{f: f, ctx: ctx, off: offset, end: end}, nil
}

// fillReader reads a window of a fill as it grows.
type fillReader struct {
	f      *fill
	ctx    context.Context
	off    int64
	end    int64 // exclusive; -1 means the end of the object
	closed bool
}

func (r *fillReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, os.ErrClosed
	}
	for {
		f := r.f
		f.mu.Lock()
		written, done, err, notify := f.written, f.done, f.err, f.notify
		f.mu.Unlock()
		if done && err != nil {
			return 0, fmt.Errorf("fill %s: %w", f.digest.Short(), err)
		}
		winEnd := r.end
		if winEnd < 0 {
			winEnd = f.size // -1 when upstream sent no length
		}
		end := written
		if winEnd >= 0 && winEnd < end {
			end = winEnd
		}
		// The last byte of the window is held back until the digest is
		// verified: a corrupt upstream must yield a broken response, never
		// a complete wrong one. Without a known size any byte may be the
		// last one, so the newest is always held back.
		if !done && (winEnd < 0 || end == winEnd) {
			end--
		}
		if r.off < end {
			n := min(int64(len(p)), end-r.off)
			m, rerr := f.file.ReadAt(p[:n], r.off)
			r.off += int64(m)
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				return m, fmt.Errorf("fill %s: read pending file: %w", f.digest.Short(), rerr)
			}
			return m, nil
		}
		if done {
			return 0, io.EOF // r.off reached the window's end or the object's
		}
		select {
		case <-notify:
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
}

func (r *fillReader) Close() error {
	if !r.closed {
		r.closed = true
		r.f.release()
	}
	return nil
}
