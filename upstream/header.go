package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// A Fetch's way to response headers is bounded as a whole by
// Config.ResponseHeaderTimeout: resolving and dialling, TLS, the ping and
// token exchange of an identity's setup (which goes on in the background
// for the next request), every redirect hop and the headers of the final
// answer, however slowly they trickle in. An upstream that accepts and
// never answers is then as unreachable as one that refuses, and says so
// fast. Once the headers are in, the deadline is lifted: a large body may
// take as long as the caller's context lets it.
//
// The deadline is a cancellation with a cause (errHeaderTimeout) fired by a
// timer, rather than a context deadline, because a deadline cannot be
// lifted; stopping the timer can.

// errHeaderTimeout is the cause a Fetch's context is cancelled with when
// its header deadline passes.
var errHeaderTimeout = errors.New("no response headers in time")

// headerDeadline is the deadline of one Fetch's way to its headers.
type headerDeadline struct {
	ctx    context.Context // the Fetch's context, cancelled when the deadline passes
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

// newHeaderDeadline starts the deadline of a Fetch on ctx. Its timer's
// function runs at most once, in a goroutine of its own that ends when it
// has cancelled; finish stops the timer.
func newHeaderDeadline(ctx context.Context, d time.Duration) *headerDeadline {
	hctx, cancel := context.WithCancelCause(ctx)
	return &headerDeadline{ctx: hctx, cancel: cancel, d: d,
		timer: time.AfterFunc(d, func() { cancel(errHeaderTimeout) })}
}

// finish ends the header phase of a Fetch on parent (the caller's context)
// with fetchOnce's result. A deadline that passed becomes an error
// wrapping oci.ErrUpstreamUnavailable and oci.ErrUpstreamTimeout, never
// the bare cancellation, unless the caller's own context ended first,
// which stays reported as such. A registry's own answer (an *oci.Error)
// stays what it is. On success the deadline's context lives until the
// Response's Body is closed.
func (h *headerDeadline) finish(parent context.Context, t target, resp *oci.Response, err error) (*oci.Response, error) {
	// Stop reports false once the timer has fired (or is firing): then
	// the context is, or is about to be, cancelled.
	expired := !h.timer.Stop()
	if err == nil && !expired {
		if resp.Body == nil {
			h.cancel(nil)
			return resp, nil
		}
		resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { h.cancel(nil) }}
		return resp, nil
	}
	h.cancel(nil)
	if err == nil {
		// The headers came as the deadline passed: the body would be cut.
		if resp.Body != nil {
			resp.Body.Close()
		}
	} else if _, answered := oci.AsError(err); answered || !expired {
		return nil, err
	}
	if parent.Err() != nil {
		return nil, fmt.Errorf("upstream %s: %w", t.registry, context.Cause(parent))
	}
	return nil, fmt.Errorf("upstream %s: %w: %w: no response headers within %s", t.registry,
		oci.ErrUpstreamUnavailable, oci.ErrUpstreamTimeout, h.d)
}

// releaseBody releases a Fetch's context when its body is closed.
type releaseBody struct {
	io.ReadCloser
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
