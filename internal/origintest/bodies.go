package origintest

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// The faults below change GET bodies as they are read. None starts a
// goroutine: a body that waits (Gate, Pace, Hang) waits in its reader's
// Read, until what it waits for, the request's context or its Close.

// Cut ends every GET body with io.ErrUnexpectedEOF after the first after
// bytes, as a connection that breaks. A body no longer than after is
// untouched.
func Cut(next Fetcher, after int64) *Fault { return CutWith(next, after, io.ErrUnexpectedEOF) }

// CutWith is Cut ending bodies with err.
func CutWith(next Fetcher, after int64, err error) *Fault {
	return bodyFault(next, func(ctx context.Context, resp *oci.Response) io.ReadCloser {
		return &cut{held: newHeld(ctx, resp.Body), left: after, err: err}
	})
}

// Hang makes every GET body send its first after bytes and then nothing
// until the request's context ends (its error is then the body's). A body
// no longer than after is untouched.
func Hang(next Fetcher, after int64) *Fault {
	return bodyFault(next, func(ctx context.Context, resp *oci.Response) io.ReadCloser {
		return &hang{held: newHeld(ctx, resp.Body), left: after}
	})
}

// Gate makes every GET body send its first half and then wait for gate to
// close before it sends the rest. A body of unknown size waits from its
// first byte (put Gate beneath UnknownSize).
func Gate(next Fetcher, gate <-chan struct{}) *Fault {
	return bodyFault(next, func(ctx context.Context, resp *oci.Response) io.ReadCloser {
		return &gated{held: newHeld(ctx, resp.Body), left: max(windowOf(resp)/2, 0), gate: gate}
	})
}

// Pace makes every GET body send nothing of its own: each n received from
// pace lets n more bytes out (of whichever body takes it), and its closing
// lets the rest out. A slow upstream, step by step. A body that has sent
// everything ends without waiting for more.
func Pace(next Fetcher, pace <-chan int) *Fault {
	return bodyFault(next, func(ctx context.Context, resp *oci.Response) io.ReadCloser {
		return &paced{held: newHeld(ctx, resp.Body), pace: pace}
	})
}

// bodyFault is a fault on the bodies of GETs: wrap replaces each.
func bodyFault(next Fetcher, wrap func(ctx context.Context, resp *oci.Response) io.ReadCloser) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		resp, err := next.Fetch(ctx, req)
		if err != nil || resp.Body == nil {
			return resp, err
		}
		resp.Body = wrap(ctx, resp)
		return resp, nil
	}, http.MethodGet)
}

// held is a body that may wait in Read: for its request's context, or
// for Close.
type held struct {
	io.ReadCloser
	ctx    context.Context
	closed chan struct{} // closed by Close
	once   sync.Once
	next   []byte // a byte read ahead by more, not passed on yet
}

func newHeld(ctx context.Context, body io.ReadCloser) held {
	return held{ReadCloser: body, ctx: ctx, closed: make(chan struct{})}
}

// Close ends any wait and closes the body beneath.
func (h *held) Close() error {
	h.once.Do(func() { close(h.closed) })
	return h.ReadCloser.Close()
}

// wait waits for ch, and reports false with the error a reader gets if the
// request's context ends or the body is closed first.
func wait[T any](h *held, ch <-chan T) (v T, ok bool, err error) {
	select {
	case v, ok = <-ch:
		return v, ok, nil
	case <-h.ctx.Done():
		return v, false, h.ctx.Err()
	case <-h.closed:
		return v, false, io.ErrClosedPipe
	}
}

// more reports whether the body beneath has more bytes, reading one ahead;
// when it has none, err is how it ended.
func (h *held) more() (bool, error) {
	if len(h.next) > 0 {
		return true, nil
	}
	var one [1]byte
	for {
		n, err := h.ReadCloser.Read(one[:])
		if n > 0 {
			h.next = one[:1:1]
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// read reads at most limit bytes (none when negative: no limit), the byte
// read ahead first.
func (h *held) read(p []byte, limit int64) (int, error) {
	if limit >= 0 && int64(len(p)) > limit {
		p = p[:limit]
	}
	if len(h.next) > 0 && len(p) > 0 {
		p[0], h.next = h.next[0], nil
		return 1, nil
	}
	return h.ReadCloser.Read(p)
}

type cut struct {
	held
	left int64 // bytes before the cut
	err  error
}

func (c *cut) Read(p []byte) (int, error) {
	if c.left == 0 {
		if more, err := c.more(); !more {
			return 0, err
		}
		return 0, c.err
	}
	n, err := c.read(p, c.left)
	c.left -= int64(n)
	return n, err
}

type hang struct {
	held
	left int64 // bytes before the hang
}

func (h *hang) Read(p []byte) (int, error) {
	if h.left == 0 {
		if more, err := h.more(); !more {
			return 0, err
		}
		_, _, err := wait(&h.held, (<-chan struct{})(nil))
		return 0, err
	}
	n, err := h.read(p, h.left)
	h.left -= int64(n)
	return n, err
}

type gated struct {
	held
	left int64 // bytes before the gate; negative once it is open
	gate <-chan struct{}
}

func (g *gated) Read(p []byte) (int, error) {
	if g.left == 0 {
		if _, _, err := wait(&g.held, g.gate); err != nil {
			return 0, err
		}
		g.left = -1
	}
	n, err := g.read(p, g.left)
	if g.left > 0 {
		g.left -= int64(n)
	}
	return n, err
}

type paced struct {
	held
	pace    <-chan int
	allowed int64 // bytes let out and not read yet; negative once pace closed
}

func (b *paced) Read(p []byte) (int, error) {
	if more, err := b.more(); !more {
		return 0, err
	}
	for b.allowed == 0 {
		k, ok, err := wait(&b.held, b.pace)
		switch {
		case err != nil:
			return 0, err
		case !ok:
			b.allowed = -1
		default:
			b.allowed = int64(max(k, 0))
		}
	}
	n, err := b.read(p, b.allowed)
	if b.allowed > 0 {
		b.allowed -= int64(n)
	}
	return n, err
}

// flipped flips the byte at offset at of the body.
type flipped struct {
	io.ReadCloser
	at, pos int64
}

func (f *flipped) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		p[f.at-f.pos] ^= 0xff
	}
	f.pos += int64(n)
	return n, err
}
