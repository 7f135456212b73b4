// Package retry wraps an origin (an upstream registry, a peer, a parent)
// with the retries a fill needs, in one place: a request that fails with
// what another attempt may cure (unreachable, 5xx, 429) is asked again
// after a backoff, upstream's Retry-After honoured up to 30 s; a body that
// is cut short, or that sends nothing for the idle timeout, is resumed
// with a Range from the bytes already read, and the caller reads one
// uninterrupted body. A listing's body (a tag list, referrers) is not
// resumed: it has no digest to prove the pieces one whole, so a cut fails
// it.
//
// An answer may ask for a longer idle timeout of its own
// (oci.Response.Idle: another cacheyd relaying a registry that stalls); a
// stalled attempt's context is cancelled with oci.ErrStalled as its cause,
// so that the origin beneath can tell a stall from the reader's own end. A
// failure another cacheyd relayed (oci.ErrRelayed) is not retried: that
// cacheyd made its attempts already.
//
// Attempts are bounded: at most Config.Retries+1 attempts that fail without
// meaningful progress. An attempt that read at least progressCredit bytes
// (1/16 of the object, at least 64 KiB and at most 4 MiB; 1 MiB when the
// size is unknown) before it failed is given back, so a long download over
// a flaky link goes on while it advances, but an origin that sends a few
// bytes and hangs up each time is dropped. A fetch of S bytes makes at most
// Retries + 1 + S/progressCredit attempts; the caller's context bounds its
// time.
//
// retry knows only oci's vocabulary: it imports nothing else of cacheyd.
package retry

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// Fetcher is what retry wraps, and what it is: an origin.
type Fetcher interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Config configures an Origin. Every zero value has a meaning.
type Config struct {
	// Retries is how many failed attempts in a row without progress a
	// fetch survives. Zero means 4; negative, none.
	Retries int
	// Backoff is the first wait between attempts, doubled after each
	// failure in a row, with jitter; upstream's Retry-After wins. Zero
	// means 200ms.
	Backoff time.Duration
	// IdleTimeout abandons an attempt whose body sends nothing for this
	// long; it is then resumed like a cut body. Zero means 30s.
	IdleTimeout time.Duration
	// Logger receives each retry at Debug. Nil means nothing is logged.
	Logger *slog.Logger
}

const (
	defaultRetries     = 4
	defaultBackoff     = 200 * time.Millisecond
	defaultIdleTimeout = 30 * time.Second
	// maxBackoff caps one wait between attempts, Retry-After included: a
	// fetch has readers waiting, and an origin asking for minutes is better
	// answered by failing, so that the clients fall back.
	maxBackoff = 30 * time.Second
)

// Origin is an origin with retries.
type Origin struct {
	inner Fetcher
	cfg   Config
}

// New wraps inner.
func New(inner Fetcher, cfg Config) *Origin {
	if cfg.Retries == 0 {
		cfg.Retries = defaultRetries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = defaultBackoff
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Origin{inner: inner, cfg: cfg}
}

// Fetch asks the origin until it answers, or until what it answers is not
// worth another attempt, and returns a body that resumes itself. The
// caller closes the body.
func (o *Origin) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	return o.FetchNotify(ctx, req, nil)
}

// FetchNotify is Fetch that tells failed, when not nil, of each attempt that
// failed before the origin answered and that is retried: a caller can let
// those waiting for it know at once (a fast 502 for an unreachable
// registry) while the retries go on.
func (o *Origin) FetchNotify(ctx context.Context, req *oci.Request, failed func(error)) (*oci.Response, error) {
	b := &body{o: o, ctx: ctx, req: *req, budget: o.cfg.Retries, size: -1, failed: failed}
	resp, err := b.next(true)
	if err != nil {
		return nil, err
	}
	out := *resp
	if req.Method == http.MethodHead {
		return &out, nil
	}
	out.Body = b
	return &out, nil
}
