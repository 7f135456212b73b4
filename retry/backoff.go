package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// backoff waits before the next attempt: upstream's Retry-After when the
// last failure gave one, else exponential from Config.Backoff with jitter.
// A Retry-After beyond maxBackoff fails at once.
func (o *Origin) backoff(ctx context.Context, failures int, last error) error {
	d := o.cfg.Backoff << min(failures, 10)
	d = d/2 + rand.N(d/2+1)
	if after, ok := oci.RetryAfter(last); ok {
		d = after
	}
	if d > maxBackoff {
		return fmt.Errorf("the origin asks to wait %s: %w", d.Round(time.Second), last)
	}
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.Join(last, context.Cause(ctx))
	}
}
