package tier

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"syscall"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// fillWriter is the state of one fill's upstream transfer across attempts:
// a reset connection or truncated body is resumed with a Range from the
// bytes already written, and the hash goes on where it stopped, so a
// resumed object is still verified end to end.
//
// Its memory does not depend on what upstream announces: one copy buffer
// of at most copyBuffer bytes, and nothing kept beside the pending file
// (small objects are read back from it for the memory tier once verified).
type fillWriter struct {
	c     *Cache
	f     *fill
	req   oci.Request
	limit int64 // largest acceptable size; -1 none

	n        int64     // bytes written and hashed
	h        hash.Hash // over bytes [0, n)
	reserved int64     // bytes claimed from the disk budget
	buf      []byte
}

// upstreamReadError marks a failure reading upstream's body, which a resume
// may cure, as opposed to a failure of our own disk or a wrong answer.
type upstreamReadError struct{ err error }

func (e *upstreamReadError) Error() string { return "read upstream: " + e.err.Error() }
func (e *upstreamReadError) Unwrap() error { return e.err }

// fetchInto does the work of a fill and returns the bytes written. On
// success the content is committed before the caller releases the readers'
// last byte, so a client that has the whole object knows it is kept; on
// failure nothing is left behind. A commit that fails (the file system
// broke in the meantime) does not fail the fill: its readers get verified
// content, which is only not kept.
func (c *Cache) fetchInto(ctx context.Context, f *fill, req *oci.Request) (int64, error) {
	w := &fillWriter{c: c, f: f, req: *req, limit: -1, h: f.digest.NewHash()}
	if f.kind == oci.KindManifest {
		w.limit = oci.MaxManifestSize
	}
	err := w.transfer(ctx)
	if f.file == nil {
		return w.n, err // failed before a pending file was made
	}
	defer func() { c.disk.unreserve(w.reserved) }() // commit takes it over
	if err == nil {
		err = w.verify()
	}
	if err != nil {
		_ = removeQuiet(f.file.Name())
		return w.n, err
	}
	var data []byte // the content, read back when it is small enough to matter
	if f.kind == oci.KindManifest || c.mem.fits(w.n) {
		if data, err = readPending(f, w.n); err != nil {
			c.log.Warn("fill: reading back a verified object failed", "digest", f.digest.Short(), "err", err)
			data = nil
		}
	}
	mediaType := "" // what is kept beside the content: manifests only
	if f.kind == oci.KindManifest {
		mediaType = f.mediaType
		if mediaType == "" && data != nil {
			// Readers of this fill answer with a generic type; what is kept
			// must still be served as a manifest next time.
			mediaType = oci.SniffManifestMediaType(data)
		}
	}
	reserved := w.reserved
	w.reserved = 0
	e, cerr := c.disk.commit(f.file, commitReq{
		digest: f.digest, size: w.n, mediaType: mediaType,
		source: req.Registry + "/" + req.Repository, private: req.Authorization != "",
	}, reserved)
	if cerr != nil {
		c.m.Uncached.WithLabelValues(uncachedReason(cerr)).Inc()
		c.log.Warn("fill verified but not kept", "digest", f.digest.Short(), "err", cerr)
		return w.n, nil
	}
	if data != nil && !e.marked() {
		// Marked content is never kept in memory: the memory tier has no
		// notion of sources, so it must only ever hold public content.
		c.mem.set(f.digest, memEntry{data: data, mediaType: e.mediaType})
	}
	return w.n, nil
}

// readPending reads a fill's verified content back from its pending file,
// which the page cache still holds.
func readPending(f *fill, n int64) ([]byte, error) {
	data := make([]byte, n)
	if _, err := f.file.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return data, nil
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

// accept checks an upstream answer and, the first time, claims the bytes
// from the disk budget, opens the pending file and tells the waiting
// readers size and media type.
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
	d := w.c.disk
	if err := d.reserve(resp.Size); err != nil {
		return err
	}
	w.reserved = max(resp.Size, 0)
	file, err := d.createPending()
	if err == nil {
		// Claim the blocks now: a full file system then refuses the fill
		// before any reader has started, and the pull is streamed
		// uncached instead of breaking half-way.
		if perr := preallocate(file, resp.Size); perr != nil {
			_ = file.Close()
			_ = removeQuiet(file.Name())
			err = fmt.Errorf("%w: preallocate %d bytes: %w", errDiskFailed, resp.Size, perr)
			if !errors.Is(perr, syscall.ENOSPC) && !errors.Is(perr, syscall.EDQUOT) {
				err = d.fail(fmt.Errorf("preallocate %d bytes: %w", resp.Size, perr))
			}
		}
	}
	if err != nil {
		d.unreserve(w.reserved)
		w.reserved = 0
		return err
	}
	f.file, f.size, f.mediaType = file, resp.Size, resp.MediaType
	close(f.ready)
	n := int64(copyBuffer)
	if resp.Size > 0 {
		n = min(n, resp.Size)
	}
	w.buf = make([]byte, n)
	return nil
}

// copy appends body to the pending file, hashing as it writes and waking
// readers after every write. Bytes beyond the announced size fail the fill;
// without an announced size, each step of bytes is claimed from the budget
// before it is written.
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
			for f.size < 0 && w.n+int64(m) > w.reserved {
				if err := w.c.disk.reserve(reserveStep); err != nil {
					return err
				}
				w.reserved += reserveStep
			}
			if _, err := f.file.Write(w.buf[:m]); err != nil {
				return w.c.disk.fail(fmt.Errorf("write pending file: %w", err))
			}
			w.h.Write(w.buf[:m])
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
