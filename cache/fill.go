package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/retry"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/disk"
)

// copyBuffer is the size of one write of a fill: readers are woken once per
// write. It is also most of what a running fill holds in memory, whatever
// upstream announces, so MaxFills × copyBuffer bounds the fills' buffers.
const copyBuffer = 128 << 10

// fillKey names a fill: the same digest asked for as a blob and as a
// manifest is two fills, because only the manifest fill learns a media type.
type fillKey struct {
	digest   oci.Digest
	manifest bool
	// registry is the registry the requests sharing the fill named. Until
	// a fill is verified its bytes are only what that registry says they
	// are, so it is shared only by requests that trust the same registry:
	// a request naming a hostile registry that drips wrong bytes for a
	// popular digest must not make everyone else's pulls of that digest
	// wait for it, nor hand them its bytes as a window. Committed
	// (verified) content is everyone's.
	registry string
	// cred is set for a fill made with a client's credentials (see
	// private.go): only requests with the same credential join it.
	cred string
	// source is set for a fill of marked content for a registry/repository
	// that is not one of its sources: only requests for that same source
	// join it, and it never looks at what the tiers hold.
	source string
	// route is the key of the route the fill fetches through (see Route).
	route string
}

// fill is one fetch from the origin into a pending file of the disk tier:
// a flight, and what the cache keeps beside it.
type fill struct {
	*flight.Flight
	// hint is the window the request that started the fill asked for,
	// fetched first.
	hint oci.Window
	// unreachable is cancelled, with the cause, when the origin could not
	// be reached on a first attempt: the requests waiting then are
	// answered at once (a fast 502, and containerd tries its next host)
	// while the fill retries for those to come. runFill cancels it at the
	// end in any case.
	unreachable context.Context
	setUnreach  context.CancelCauseFunc
	// mediaType is the origin's Content-Type, set before the flight opens
	// and read only after Wait.
	mediaType string
	// registry is the registry the fill fetches from.
	registry string
	// slotted is set once the fill holds a fill slot (slots.go): a request
	// that stops waiting for its answer before is answered that the fills
	// are full, not that upstream was slow.
	slotted atomic.Bool

	// via is what every request of the fill goes through: the route decided
	// when the fill was keyed (sourceFor), with the retries.
	via *retry.Origin
}

// joinOrStart returns the fill in flight for key with a reference taken, or
// starts one. It returns nil when the content was committed meanwhile. A
// peer's request for content whose fill upstream failed a moment ago gets
// that failure (failures.go). A fill it starts fetches through rt.
func (c *Cache) joinOrStart(req *oci.Request, key fillKey, rt source) (f *fill, isNew bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fills[key]; f != nil && f.Acquire() {
		return f, false, nil
	}
	if req.FromPeer && key.cred == "" {
		if err, ok := c.recentFailure(key); ok {
			return nil, false, err
		}
	}
	// Re-check the disk under c.mu: a fill commits to disk before it
	// unregisters (under c.mu), so a request that missed on disk and then
	// finds no fill here may have raced with a commit. Without this check it
	// would fetch the same content again. A fill for a source elsewhere
	// does not care what is committed.
	if key.source == "" {
		if e, err := c.disk.Stat(context.Background(), key.digest); err == nil && (!key.manifest || e.MediaType != "") {
			return nil, false, nil
		}
	}
	f = &fill{Flight: flight.New(key.digest), hint: req.Wants, registry: req.Registry}
	f.via = c.withRetries(rt)
	f.unreachable, f.setUnreach = context.WithCancelCause(context.Background())
	f.Acquire() // the caller's reference, beside the writer's
	c.fills[key] = f
	c.m.FillsInFlight.Inc()
	c.wg.Add(1)
	origin := *req
	origin.Method, origin.Wants, origin.Route = http.MethodGet, oci.Window{}, key.route
	if key.cred == "" {
		origin.Authorization = "" // as cacheyd itself
	}
	// Stopped by the fill's end: success, upstream failure, its timeout or
	// Close cancelling c.ctx.
	go c.runFill(f, key, &origin)
	return f, true, nil
}

// runFill waits for a fill slot, fetches one object into a pending file,
// verifies it, commits it and unregisters the fill.
func (c *Cache) runFill(f *fill, key fillKey, req *oci.Request) {
	defer c.wg.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.FillTimeout)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var n int64
	sl := &slot{registry: req.Registry, progress: f.Progress, readers: f.Readers, stop: stop}
	sctx, scancel := context.WithTimeout(ctx, c.cfg.AnswerTimeout)
	err := c.slots.acquire(sctx, sl)
	scancel()
	if err == nil {
		f.slotted.Store(true)
		n, err = c.fetchInto(ctx, f, req)
		c.slots.release(sl)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && c.ctx.Err() == nil {
			err = upstreamFault(fmt.Errorf("not done within the fill timeout (%s): %w", c.cfg.FillTimeout, err))
		}
		err = fmt.Errorf("fill %s: %w", f.Digest().Short(), err)
	}
	// Unregister before telling the readers: a request that sees this
	// fill's outcome and asks again must start a new fill (or hit the
	// disk, where a success was committed), never join a finished one.
	c.mu.Lock()
	delete(c.fills, key)
	if err != nil && key.cred == "" && oci.FromUpstream(err) {
		c.failures.put(key.failedKey(), failure{err: err, until: time.Now().Add(failMemory)})
	}
	c.mu.Unlock()
	f.Finish(err)
	c.m.FillsInFlight.Dec()
	attrs := []any{"registry", req.Registry, "repository", req.Repository, "digest", f.Digest().Short(),
		"kind", req.Kind.String(), "bytes", n, "duration", time.Since(start).Round(time.Millisecond)}
	if err != nil {
		c.m.Fills.WithLabelValues("error").Inc()
		c.log.Warn("fill failed", append(attrs, "err", err)...)
		return
	}
	c.m.Fills.WithLabelValues("ok").Inc()
	c.log.Info("fill done", attrs...)
}

// fetchInto does the work of a fill and returns the bytes written. On
// success the content is verified and committed before the caller releases
// the readers' last byte, so a client that has the whole object knows it is
// kept; on failure nothing is left behind. A commit that fails (the file
// system broke in the meantime) does not fail the fill: its readers get
// verified content, which is only not kept.
func (c *Cache) fetchInto(ctx context.Context, f *fill, req *oci.Request) (int64, error) {
	limit := int64(-1)
	if req.Kind == oci.KindManifest {
		limit = oci.MaxManifestSize
	}
	// The first request of a blob asks for the starter's window, if it has
	// one, else for the first chunk: a blob no larger than a chunk is then
	// one request still, and a larger one is never asked for whole only to
	// be cut off, which would cost upstream bytes nobody reads. chunks.go
	// fetches the rest. Manifests are asked for whole.
	first := *req
	first.Offset, first.Length, first.Suffix = 0, 0, 0
	if req.Kind == oci.KindBlob && c.cfg.FillParallel > 1 {
		first.Offset, first.Length, first.Suffix = f.hint.Offset, f.hint.Length, f.hint.Suffix
		if f.hint == (oci.Window{}) {
			first.Length = c.cfg.FillChunk
		}
	}
	notify := func(err error) {
		if errors.Is(err, oci.ErrUpstreamUnavailable) && !errors.Is(err, oci.ErrUpstreamTimeout) {
			f.setUnreach(err) // the first cause stays
		}
	}
	resp, err := f.via.FetchNotify(ctx, &first, notify)
	if e, ok := oci.AsError(err); ok && e.Status == http.StatusRequestedRangeNotSatisfiable && first.Offset+first.Length+first.Suffix > 0 {
		// The starter's window is not in the object (its client asked for
		// bytes past the end): the whole object, then.
		resp, err = f.via.FetchNotify(ctx, req, notify)
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	whole := resp.Offset == 0 && (resp.End <= 0 || resp.End == resp.Size)
	switch {
	case resp.Digest != "" && resp.Digest != f.Digest():
		return 0, upstreamFault(fmt.Errorf("upstream answered with digest %s", resp.Digest.Short()))
	case limit >= 0 && resp.Size > limit:
		return 0, oci.ErrTooLarge(fmt.Sprintf("manifest of %d bytes exceeds %d", resp.Size, limit))
	}
	p, err := c.disk.Create(resp.Size)
	if err != nil {
		return 0, err
	}
	file := p.File()
	f.mediaType = resp.MediaType
	f.Open(file, resp.Size, func() { _ = file.Close() })
	var n int64
	if resp.Size >= 0 && req.Kind == oci.KindBlob && (!whole || (resp.Size > c.cfg.FillChunk && c.cfg.FillParallel > 1)) {
		k := &chunker{c: c, f: f, p: p, req: *req, size: resp.Size, chunk: c.cfg.FillChunk}
		k.req.Offset, k.req.Length, k.req.Suffix = 0, 0, 0
		hinted := f.hint != (oci.Window{}) || first.Length > 0
		if err = k.run(ctx, resp, c.cfg.FillParallel, rescuers(c.cfg.FillParallel), hinted); err == nil {
			n = resp.Size
		}
	} else {
		n, err = copyInto(f, p, resp.Body, resp.Size, limit)
	}
	if err == nil {
		if err = f.Verify(n); err != nil {
			err = upstreamFault(err)
		}
	}
	if err != nil {
		p.Abort()
		return n, err
	}
	return n, c.commit(f, p, req, n)
}

// copyInto writes body into the fill's flight in order, claiming the disk
// budget for each write's bytes as they arrive (never for a size upstream
// announced).
func copyInto(f *fill, p *disk.Pending, body io.Reader, size, limit int64) (int64, error) {
	buf := make([]byte, copyBuffer)
	if size > 0 {
		buf = buf[:min(int64(len(buf)), size)]
	}
	var n int64
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			if limit >= 0 && n+int64(m) > limit {
				return n, oci.ErrTooLarge(fmt.Sprintf("manifest exceeds %d bytes", limit))
			}
			if size >= 0 && n+int64(m) > size {
				return n, upstreamFault(fmt.Errorf("upstream sent more than the %d bytes it announced", size))
			}
			if err := p.Claim(int64(m)); err != nil {
				return n, err
			}
			if _, err := f.WriteAt(buf[:m], n); err != nil {
				if errors.Is(err, flight.ErrBeyondSize) {
					return n, upstreamFault(fmt.Errorf("upstream sent more than the %d bytes it announced", size))
				}
				return n, p.Failed(fmt.Errorf("write pending file: %w", err))
			}
			n += int64(m)
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, upstreamFault(fmt.Errorf("read upstream after %d bytes: %w", n, rerr))
		}
	}
}

// upstreamFault marks err, met while reading what upstream sent, as the
// registry's doing (oci.ErrUpstreamFault): a replica asking this one is told
// so (oci.RelayedHeader) and does not fetch it again around this one.
func upstreamFault(err error) error {
	if oci.FromUpstream(err) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", oci.ErrUpstreamFault, err)
}

// commit keeps a verified fill: on disk with its record, and in memory when
// it is small and public.
func (c *Cache) commit(f *fill, p *disk.Pending, req *oci.Request, n int64) error {
	// The content, read back for the memory tier (public content small
	// enough), or to name the media type of a manifest whose origin named
	// none. The copy is claimed from the read memory budget (readmem.go)
	// until the memory tier has it; without room it is not made: the object
	// is kept on disk only (a manifest without its type, which the next
	// request for it as a manifest fetches again).
	var data []byte
	if (req.Kind == oci.KindManifest && f.mediaType == "") || (req.Authorization == "" && c.mem.Fits(n)) {
		if claim := c.reads.forCopy(req.Registry, n); claim != nil {
			defer claim.release()
			data = make([]byte, n)
			if _, err := p.File().ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
				c.log.Warn("fill: reading back a verified object failed", "digest", f.Digest().Short(), "err", err)
				data = nil
			}
		}
	}
	e := tier.Entry{Digest: f.Digest(), Size: n}
	if req.Kind == oci.KindManifest {
		e.MediaType = f.mediaType
		if e.MediaType == "" && data != nil {
			// Readers of this fill answer with a generic type; what is kept
			// must still be served as a manifest next time.
			e.MediaType = oci.SniffManifestMediaType(data)
		}
	}
	if req.Authorization != "" {
		e.Private = []string{sourceOf(req)}
	} else {
		e.Public = []string{sourceOf(req)}
	}
	held, err := p.Commit(e)
	if err != nil {
		c.m.Uncached.WithLabelValues(uncachedReason(err)).Inc()
		c.log.Warn("fill verified but not kept", "digest", f.Digest().Short(), "err", err)
		return nil
	}
	c.keepInMemory(held, data)
	return nil
}

// keepInMemory offers verified content to the memory tier, which must only
// ever hold public content: marked content is taken out instead.
func (c *Cache) keepInMemory(e tier.Entry, data []byte) {
	switch {
	case e.Marked():
		_ = c.mem.Delete(context.Background(), e.Digest)
	case data != nil:
		c.mem.Set(e, data)
	}
}
