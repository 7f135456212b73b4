package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// fillWriter is the state of one fill's upstream transfer across attempts:
// a reset connection or truncated body is resumed with a Range from the
// bytes already written, and the hash goes on where it stopped, so a
// resumed object is still verified end to end.
type fillWriter struct {
	c     *Cache
	f     *fill
	req   oci.Request
	limit int64 // largest acceptable size; -1 none

	n        int64     // bytes written and hashed
	h        hash.Hash // over bytes [0, n)
	reserved int64     // bytes claimed from the disk budget
	keep     *bytes.Buffer
	buf      []byte
}

// upstreamReadError marks a failure reading upstream's body, which a resume
// may cure, as opposed to a failure of our own disk or a wrong answer.
type upstreamReadError struct{ err error }

func (e *upstreamReadError) Error() string { return "read upstream: " + e.err.Error() }
func (e *upstreamReadError) Unwrap() error { return e.err }

// fetchInto does the work of a fill and returns the bytes written. On
// success the content is committed; on failure nothing is left behind.
func (c *Cache) fetchInto(ctx context.Context, f *fill, req *oci.Request) (int64, error) {
	w := &fillWriter{c: c, f: f, req: *req, limit: -1, h: f.digest.NewHash()}
	if f.kind == oci.KindManifest {
		w.limit = oci.MaxManifestSize
	}
	err := w.transfer(ctx)
	if f.file == nil {
		return w.n, err // failed before a pending file was made
	}
	defer func() { c.disk.unreserve(w.reserved) }() // after a commit, w.reserved is 0
	if err == nil {
		err = w.verify()
	}
	mediaType := "" // what is kept beside the content: manifests only
	if f.kind == oci.KindManifest {
		mediaType = f.mediaType
		if mediaType == "" && err == nil {
			// Readers of this fill answer with a generic type; what is kept
			// must still be served as a manifest next time.
			mediaType = oci.SniffManifestMediaType(w.keep.Bytes())
		}
	}
	var private []string // fetched with a client's credentials: marked
	if req.Authorization != "" {
		private = []string{req.Registry + "/" + req.Repository}
	}
	if err == nil {
		if private != nil {
			// Marked before it is visible: no request may find it unmarked.
			c.private.set(f.digest, true)
		}
		err = c.disk.commit(f.file.Name(), diskEntry{digest: f.digest, size: w.n, mediaType: mediaType, private: private}, w.reserved)
		if err == nil {
			w.reserved = 0
			if private == nil {
				c.private.set(f.digest, false)
			}
		}
	}
	if err != nil {
		_ = removeQuiet(f.file.Name())
		return w.n, err
	}
	if w.keep != nil {
		c.mem.set(f.digest, memEntry{data: w.keep.Bytes(), mediaType: mediaType})
	}
	return w.n, nil
}

// transfer fetches until the body is complete, retrying what a retry can
// cure: an unreachable upstream, 5xx, 429 (after its Retry-After) and a body
// cut short. An attempt that wrote bytes does not use up the retry budget,
// so a long download over a flaky link is not abandoned while it advances.
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
		if w.n > before {
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

// attempt makes one upstream request from byte w.n on and copies its body.
// An attempt whose upstream sends nothing for Config.FillIdleTimeout is
// abandoned and resumed like a cut body: a connection that hangs must not
// hold every reader until the fill timeout.
func (w *fillWriter) attempt(ctx context.Context) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(w.c.cfg.FillIdleTimeout, func() { cancel(errUpstreamIdle) })
	defer idle.Stop()

	req := w.req
	req.Offset = w.n
	resp, err := w.c.origin.Fetch(actx, &req)
	if err != nil {
		return idleOr(actx, err)
	}
	defer resp.Body.Close()
	if err := w.accept(resp); err != nil {
		return err
	}
	body := &idleReader{r: resp.Body, idle: idle, d: w.c.cfg.FillIdleTimeout}
	// An upstream that ignored the Range starts from 0: skip what we have.
	if skip := w.n - resp.Offset; skip > 0 {
		if _, err := io.CopyN(io.Discard, body, skip); err != nil {
			return &upstreamReadError{fmt.Errorf("skipping %d bytes already written: %w", skip, idleOr(actx, err))}
		}
	}
	if err := w.copy(body); err != nil {
		var re *upstreamReadError
		if errors.As(err, &re) {
			re.err = idleOr(actx, re.err)
		}
		return err
	}
	return nil
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

// accept checks an upstream answer and, the first time, opens the pending
// file and tells the waiting readers size and media type.
func (w *fillWriter) accept(resp *oci.Response) error {
	f := w.f
	switch {
	case resp.Digest != "" && resp.Digest != f.digest:
		return fmt.Errorf("upstream answered with digest %s", resp.Digest.Short())
	case resp.Offset > w.n:
		return fmt.Errorf("upstream answered from offset %d, asked for %d", resp.Offset, w.n)
	case w.limit >= 0 && resp.Size > w.limit:
		return oci.ErrTooLarge(fmt.Sprintf("manifest of %d bytes exceeds %d", resp.Size, w.limit))
	}
	if f.file != nil {
		if resp.Size >= 0 && f.size >= 0 && resp.Size != f.size {
			return fmt.Errorf("upstream changed size from %d to %d on resume", f.size, resp.Size)
		}
		return nil
	}
	if err := w.c.disk.reserve(resp.Size); err != nil {
		return err
	}
	w.reserved = max(resp.Size, 0)
	file, err := w.c.disk.createPending()
	if err == nil {
		// Claim the blocks now: a full file system then refuses the fill
		// before any reader has started, and the pull is streamed
		// uncached instead of breaking half-way.
		err = preallocate(file, resp.Size)
		if err != nil {
			_ = file.Close()
			_ = removeQuiet(file.Name())
		}
	}
	if err != nil {
		w.c.disk.unreserve(w.reserved)
		w.reserved = 0
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			err = fmt.Errorf("%w: %w", errNoRoom, err)
		}
		return err
	}
	f.file, f.size, f.mediaType = file, resp.Size, resp.MediaType
	close(f.ready)
	if f.kind == oci.KindManifest || w.c.mem.fits(resp.Size) {
		w.keep = bytes.NewBuffer(make([]byte, 0, max(resp.Size, 0)))
	}
	w.buf = make([]byte, copyBuffer)
	return nil
}

// copy appends body to the pending file, hashing as it writes and waking
// readers after every write.
func (w *fillWriter) copy(body io.Reader) error {
	f := w.f
	for {
		m, rerr := body.Read(w.buf)
		if m > 0 {
			if w.limit >= 0 && w.n+int64(m) > w.limit {
				return oci.ErrTooLarge(fmt.Sprintf("manifest exceeds %d bytes", w.limit))
			}
			if f.size >= 0 && w.n+int64(m) > f.size {
				return fmt.Errorf("upstream sent more than the %d bytes it announced", f.size)
			}
			if _, err := f.file.Write(w.buf[:m]); err != nil {
				return fmt.Errorf("write pending file: %w", err)
			}
			w.h.Write(w.buf[:m])
			if w.keep != nil {
				w.keep.Write(w.buf[:m])
			}
			w.n += int64(m)
			f.advance(int64(m))
		}
		if errors.Is(rerr, io.EOF) {
			if f.size >= 0 && w.n < f.size {
				return &upstreamReadError{fmt.Errorf("body ended at %d of %d bytes: %w", w.n, f.size, io.ErrUnexpectedEOF)}
			}
			return nil
		}
		if rerr != nil {
			return &upstreamReadError{fmt.Errorf("after %d bytes: %w", w.n, rerr)}
		}
	}
}

// verify checks size and digest of everything written.
func (w *fillWriter) verify() error {
	if w.f.size >= 0 && w.n != w.f.size {
		return fmt.Errorf("upstream sent %d bytes, announced %d", w.n, w.f.size)
	}
	if !w.f.digest.Matches(w.h) {
		return fmt.Errorf("digest mismatch: content is not %s", w.f.digest.Short())
	}
	return nil
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
