package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// Retries of a fill. A fill makes at most Config.FillRetries+1 attempts that
// fail without meaningful progress; an attempt that wrote at least
// progressCredit bytes before it failed (1/16 of the object, at least 64 KiB
// and at most 4 MiB; 1 MiB when the size is unknown) is given back, so a
// long download over a flaky link is not abandoned while it advances, but
// an upstream that sends a few bytes and hangs up each time is dropped
// after FillRetries+1 attempts instead of being asked again for as long as
// it keeps sending something. In all, a fill of S bytes makes at most
// FillRetries + 1 + S/progressCredit attempts, and never runs longer than
// Config.FillTimeout.

// progressCredit is what a failed attempt must have written to be given
// back.
func progressCredit(size int64) int64 {
	if size < 0 {
		return 1 << 20
	}
	return min(max(size/16, 64<<10), 4<<20)
}

// transfer fetches until the body is complete, retrying what a retry can
// cure: an unreachable upstream, 5xx, 429 (after its Retry-After) and a body
// cut short.
func (w *fillWriter) transfer(ctx context.Context) error {
	budget := w.c.cfg.FillRetries
	for failures := 0; ; {
		before := w.n
		err := w.attempt(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		if w.n-before >= progressCredit(w.f.size) {
			failures = 0
		} else {
			if budget <= 0 {
				return err
			}
			budget--
			failures++
		}
		w.c.log.Debug("fill retry", "digest", w.f.digest.Short(), "written", w.n, "err", err)
		if err := w.c.backoff(ctx, failures, err); err != nil {
			return err
		}
	}
}

// errUpstreamIdle is why an attempt was abandoned for sending nothing.
var errUpstreamIdle = errors.New("upstream sent nothing within the fill idle timeout")

// idleOr names the idle timeout as the cause of err when it was.
func idleOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errUpstreamIdle) {
		return &upstreamReadError{fmt.Errorf("%w: %w", cause, err)}
	}
	return err
}

// idleReader pushes the idle deadline back whenever upstream sends bytes.
type idleReader struct {
	r    io.Reader
	idle *time.Timer
	d    time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.idle.Reset(r.d)
	}
	return n, err
}

// retryable reports whether another attempt may succeed. A registry's
// answer inside a read error (a manifest cut at the size limit, say) is
// judged as that answer, not as a broken connection.
func retryable(err error) bool {
	if e, ok := oci.AsError(err); ok {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	var re *upstreamReadError
	return errors.As(err, &re) || errors.Is(err, oci.ErrUpstreamUnavailable)
}

// maxBackoff caps one wait between attempts, Retry-After included: a fill
// has readers waiting, and a registry asking for minutes is better answered
// by failing the fill and letting the clients fall back.
const maxBackoff = 30 * time.Second

// backoff waits before the next attempt: upstream's Retry-After when it
// gave one, else exponential from Config.RetryBackoff with jitter.
func (c *Cache) backoff(ctx context.Context, failures int, err error) error {
	d := c.cfg.RetryBackoff << min(failures, 10)
	d = d/2 + rand.N(d/2+1)
	if e, ok := oci.AsError(err); ok && e.RetryAfter != "" {
		if secs, perr := strconv.Atoi(e.RetryAfter); perr == nil && secs >= 0 {
			d = time.Duration(secs) * time.Second
		} else if t, perr := http.ParseTime(e.RetryAfter); perr == nil {
			d = time.Until(t)
		}
	}
	if d > maxBackoff {
		return fmt.Errorf("upstream asks to wait %s: %w", d.Round(time.Second), err)
	}
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
}
