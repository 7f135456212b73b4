package flight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// NewReader returns a reader of length bytes of the object from offset
// (length < 0: to the end). It takes over one reference, which its Close
// gives back; the flight must be open (Wait returned nil). ctx ends its
// waiting, and only its own.
//
// A reader of the whole object gets its last byte only once the whole
// object is verified (Finish(nil)); so does every reader of an object whose
// size is unknown, for which any byte may be the last. With hold, a window
// waits for the verdict before its own last byte too; without it, a window
// is answered as soon as its bytes are written, as a registry answers a
// Range: unverified (a client verifies what it assembles).
func (f *Flight) NewReader(ctx context.Context, offset, length int64, hold bool) io.ReadCloser {
	end := int64(-1)
	if length >= 0 {
		end = offset + length
	}
	return &reader{f: f, ctx: ctx, from: offset, off: offset, end: end, hold: hold}
}

// reader reads a window of a flight as it is written.
type reader struct {
	f      *Flight
	ctx    context.Context
	own    *os.File // the file opened again for Next, nil until then
	from   int64    // where the window starts
	off    int64    // where the next read starts
	end    int64    // exclusive; -1: the end of the object
	hold   bool
	closed bool
	// eager says the writer should wake this reader for any byte (see
	// wakeRun); the flight's mu guards it.
	eager bool
	// timer bounds a wait that is not eager to wakeDelay; nil until the
	// first such wait.
	timer *time.Timer
}

// availableLocked returns how far the reader may read now: its window's
// bytes written without a gap from r.off, short of a last byte that waits
// for the verdict; and the flight's error, or io.EOF at the end of the
// window. The flight's mu must be held.
func (r *reader) availableLocked() (until int64, err error) {
	f := r.f
	if f.done && f.err != nil {
		return 0, f.err
	}
	size := f.size
	if f.final >= 0 {
		size = f.final
	}
	winEnd := r.end
	if winEnd < 0 || (size >= 0 && winEnd > size) {
		winEnd = size // -1 when the size is unknown
	}
	until = f.written.reach(r.off)
	if winEnd >= 0 && until > winEnd {
		until = winEnd
	}
	if !f.done {
		whole := winEnd < 0 || (r.from == 0 && winEnd == size) // or it may be
		if (whole || r.hold) && (winEnd < 0 || until == winEnd) {
			until--
		}
	}
	if winEnd >= 0 && r.off >= winEnd {
		// The whole window is read: its last byte was released, so
		// whatever it waited for has come.
		return until, io.EOF
	}
	return until, nil
}

func (r *reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, os.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	until, err := r.wait()
	if err != nil {
		return 0, err
	}
	n := min(int64(len(p)), until-r.off)
	m, rerr := r.f.file.ReadAt(p[:n], r.off)
	r.off += int64(m)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return m, fmt.Errorf("flight %s: read pending file: %w", r.f.digest.Short(), rerr)
	}
	if m > 0 {
		return m, nil
	}
	return 0, fmt.Errorf("flight %s: pending file shorter than written: %w", r.f.digest.Short(), io.ErrUnexpectedEOF)
}

// wait waits until the reader may read (until > r.off), or returns EOF at
// the end of its window, the flight's failure, or ctx's cause. A reader
// that has sent bytes already waits for the writer to have a run of them
// (wakeRun) or for wakeDelay, whichever comes first; after that wait it is
// eager, woken by the next byte.
func (r *reader) wait() (until int64, err error) {
	f := r.f
	waited := false
	f.mu.Lock()
	for {
		until, err := r.availableLocked()
		if r.off < until {
			f.mu.Unlock()
			return until, nil
		}
		if err != nil {
			f.mu.Unlock()
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("flight %s: %w", f.digest.Short(), err)
		}
		// Checked and registered under one hold of mu, so that no write
		// can fall between them unseen.
		if f.waiting == nil {
			f.waiting = map[*reader]struct{}{}
		}
		f.waiting[r] = struct{}{}
		if f.stranded != nil && !waited && (r.off == 0 || f.written.reach(r.off-1) == r.off-1) {
			close(f.stranded)
			f.stranded = nil
		}
		notify := f.notify
		var timeout <-chan time.Time
		// The first bytes are never delayed, nor any after a wait.
		r.eager = r.off == r.from || waited
		if !r.eager {
			if r.timer == nil {
				r.timer = time.NewTimer(wakeDelay)
			} else {
				r.timer.Reset(wakeDelay)
			}
			timeout = r.timer.C
		}
		f.mu.Unlock()
		var cause error
		select {
		case <-notify:
		case <-timeout:
		case <-r.ctx.Done():
			cause = context.Cause(r.ctx)
		}
		if r.timer != nil {
			r.timer.Stop()
		}
		f.mu.Lock()
		delete(f.waiting, r)
		if cause != nil {
			f.mu.Unlock()
			return 0, cause
		}
		// Woken by the writer or by the timer: the next wait, if the bytes
		// are not there, is for any byte.
		waited = true
	}
}

// Next is Read for a caller that sends bytes from the file itself, with
// sendfile: it waits until the reader may read, and returns a file of its
// own (not the flight's, whose offset others would move) positioned at the
// reader's next byte, and how many bytes may be sent from it now. The
// caller reports what it sent with Advance. At the end of the window it
// returns io.EOF. The flight's file must be an *os.File, on a system where
// it can be opened again (Linux); otherwise Next fails with
// errors.ErrUnsupported and the caller reads instead.
func (r *reader) Next() (*os.File, int64, error) {
	if r.closed {
		return nil, 0, os.ErrClosed
	}
	until, err := r.wait()
	if err != nil {
		return nil, 0, err
	}
	if r.own == nil {
		f, ok := r.f.file.(*os.File)
		if !ok {
			return nil, 0, errors.ErrUnsupported
		}
		if r.own, err = reopen(f); err != nil {
			return nil, 0, err
		}
	}
	if _, err := r.own.Seek(r.off, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("flight %s: %w", r.f.digest.Short(), err)
	}
	return r.own, until - r.off, nil
}

// Advance records n bytes sent from the file Next gave.
func (r *reader) Advance(n int64) { r.off += n }

// Close gives the reader's reference back.
func (r *reader) Close() error {
	if !r.closed {
		r.closed = true
		if r.own != nil {
			_ = r.own.Close()
		}
		r.f.Release()
	}
	return nil
}
