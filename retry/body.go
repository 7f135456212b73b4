package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// progressCredit is what a failed attempt must have read to be given back.
func progressCredit(size int64) int64 {
	if size < 0 {
		return 1 << 20
	}
	return min(max(size/16, 64<<10), 4<<20)
}

// body is the body of a fetch across its attempts. It is read by one
// goroutine.
type body struct {
	o   *Origin
	ctx context.Context
	req oci.Request // as asked

	// start and end are the bytes of the object the caller's body runs
	// over, as the first answer said: end exclusive, -1 when unknown.
	start, end int64
	window     bool  // the caller asked for a window (Length or Suffix)
	n          int64 // bytes handed to the caller
	size       int64 // the object's size, -1 unknown
	budget     int   // failed attempts left without progress
	failures   int   // failed in a row, for the backoff
	started    bool
	failed     func(error) // told of failed attempts before the first answer

	cur    io.ReadCloser           // the attempt's body
	actx   context.Context         // the attempt's context
	cancel context.CancelCauseFunc // ends the attempt
	idle   *time.Timer
	// idleFor is the attempt's idle timeout: its answer's Response.Idle,
	// or Config.IdleTimeout.
	idleFor time.Duration
	past    bool  // the attempt's answer runs past end (it ignored the range)
	before  int64 // n when the attempt started
	err     error // sticky
}

// next makes attempts until one answers: first is the first request (its
// answer is returned as it is), later ones resume the body from the bytes
// read.
func (b *body) next(first bool) (*oci.Response, error) {
	for {
		if !first || b.started {
			if err := b.o.backoff(b.ctx, b.failures, b.err); err != nil {
				return nil, err
			}
		}
		b.started = true
		actx, cancel := context.WithCancelCause(b.ctx)
		req := b.req
		if !first {
			w := oci.Window{Offset: b.start + b.n}
			if b.window && b.end >= 0 {
				w.Length = b.end - w.Offset
			}
			req = *b.req.Part(w)
		}
		resp, err := b.o.inner.Fetch(actx, &req)
		if err == nil {
			err = b.accept(resp, first)
			if err != nil {
				resp.Body.Close()
			}
		}
		if err == nil {
			b.cur, b.actx, b.cancel, b.before = resp.Body, actx, cancel, b.n
			b.idleFor = b.o.cfg.IdleTimeout
			if resp.Idle > 0 {
				// The origin knows its bodies may pause longer (another
				// cacheyd resuming a registry that stalled).
				b.idleFor = resp.Idle
			}
			if resp.Body != nil {
				b.idle = time.AfterFunc(b.idleFor, func() { cancel(oci.ErrStalled) })
			} else {
				cancel(nil)
			}
			return resp, nil
		}
		cancel(nil)
		if !oci.Retryable(err) || b.ctx.Err() != nil || b.budget <= 0 {
			return nil, err
		}
		if first && b.failed != nil {
			b.failed(err)
		}
		b.budget--
		b.failures++
		b.err = err
		b.o.cfg.Logger.Debug("retry", "reference", b.req.Reference.String(), "offset", req.Offset, "err", err)
	}
}

// accept checks a resumed answer against what came before, and skips what
// an origin that ignored the Range sent again.
func (b *body) accept(resp *oci.Response, first bool) error {
	if first {
		b.size, b.start, b.end = resp.Size, resp.Offset, resp.End
		if b.end <= 0 {
			b.end = resp.Size // not said: to the end
		}
		b.window = b.req.Length > 0 || b.req.Suffix > 0
		return nil
	}
	want := b.start + b.n
	switch {
	case resp.Offset > want:
		return fmt.Errorf("retry: the origin answered from offset %d, asked for %d", resp.Offset, want)
	case resp.Size >= 0 && b.size >= 0 && resp.Size != b.size:
		return fmt.Errorf("retry: the origin changed the size from %d to %d on resume", b.size, resp.Size)
	}
	b.past = b.end >= 0 && (resp.End <= 0 || resp.End > b.end)
	if skip := want - resp.Offset; skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			return fmt.Errorf("retry: skipping %d bytes already read: %w", skip, err)
		}
	}
	return nil
}

func (b *body) Read(p []byte) (int, error) {
	for {
		if b.err != nil && b.cur == nil {
			return 0, b.err
		}
		if b.end >= 0 {
			left := b.end - (b.start + b.n)
			if left <= 0 {
				return 0, b.atEnd()
			}
			p = p[:min(int64(len(p)), left)]
		}
		n, err := b.cur.Read(p)
		if n > 0 {
			b.idle.Reset(b.idleFor)
			b.n += int64(n)
		}
		if errors.Is(err, io.EOF) && b.end >= 0 && b.start+b.n < b.end {
			err = fmt.Errorf("body ended at %d of %d bytes: %w", b.start+b.n, b.end, io.ErrUnexpectedEOF)
		}
		if err == nil || errors.Is(err, io.EOF) {
			return n, err
		}
		if cause := context.Cause(b.ctx); cause != nil {
			return n, cause
		}
		if errors.Is(context.Cause(b.actx), oci.ErrStalled) {
			err = fmt.Errorf("%w: %w", oci.ErrStalled, err)
		}
		b.stop()
		// A listing has no digest to prove a resumed body whole: one cut
		// while the list changed upstream would splice two versions. It
		// fails, to be asked for again from its start.
		if !oci.Retryable(err) || b.req.Kind.IsListing() {
			b.err = err
			return n, err
		}
		if b.n-b.before >= progressCredit(b.size) {
			b.failures = 0
		} else if b.budget <= 0 {
			b.err = err
			return n, err
		} else {
			b.budget--
			b.failures++
		}
		b.err = err
		if _, rerr := b.next(false); rerr != nil {
			b.err = rerr
			return n, rerr
		}
		b.err = nil
		if n > 0 {
			return n, nil
		}
	}
}

// atEnd is what a read at the end of the caller's body returns: EOF, unless
// the answer goes on past what it said it holds, which is no answer to
// trust. A resumed answer that ignored the range runs past on purpose.
func (b *body) atEnd() error {
	if b.past || b.cur == nil {
		return io.EOF
	}
	var probe [1]byte
	n, err := b.cur.Read(probe[:])
	switch {
	case n > 0:
		b.err = fmt.Errorf("retry: the origin sent more than the %d bytes it announced", b.end-b.start)
		b.stop()
		return b.err
	case err == nil || errors.Is(err, io.EOF):
		return io.EOF
	}
	return err
}

// stop ends the current attempt.
func (b *body) stop() {
	if b.idle != nil {
		b.idle.Stop()
	}
	if b.cur != nil {
		b.cur.Close()
		b.cur = nil
	}
	if b.cancel != nil {
		b.cancel(nil)
	}
}

// Close ends the fetch.
func (b *body) Close() error {
	b.stop()
	if b.err == nil {
		b.err = errors.New("retry: body closed")
	}
	return nil
}
