package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	// Named move here: fill is this package's name for a fill in flight.
	move "github.com/cacheyd/cacheyd/fill"
	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

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
// a flight, and what the cache keeps beside it. Package fill moves the
// bytes; the cache decides what is fetched, from where, and what is kept.
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
	// from is the route the fill fetches through, decided when it was
	// keyed (sourceFor).
	from source
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
	f = &fill{Flight: flight.New(key.digest), hint: req.Wants, registry: req.Registry, from: rt}
	f.unreachable, f.setUnreach = context.WithCancelCause(context.Background())
	f.Acquire() // the caller's reference, beside the writer's
	c.fills[key] = f
	c.m.FillsInFlight.Inc()
	c.wg.Add(1)
	// The whole object, whatever window the first client reads, as
	// cacheyd unless the fill is made with the client's credentials.
	whole := req.Whole()
	if key.cred == "" {
		whole = whole.AsCacheyd()
	}
	whole.Route = key.route
	// Stopped by the fill's end: success, upstream failure, its timeout or
	// Close cancelling c.ctx.
	go c.runFill(f, key, whole)
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
	if r, ok := f.from.from.(Refuter); ok && errors.Is(err, flight.ErrMismatch) {
		r.Refute(req)
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

// fetchInto does the work of a fill (package fill) and returns the bytes
// written. On success the content is verified and committed before the
// caller releases the readers' last byte, so a client that has the whole
// object knows it is kept; on failure nothing is left behind. A commit that
// fails (the file system broke in the meantime) does not fail the fill: its
// readers get verified content, which is only not kept.
func (c *Cache) fetchInto(ctx context.Context, f *fill, req *oci.Request) (int64, error) {
	res, err := move.Run(ctx, move.Job{
		Config: move.Config{Chunk: c.cfg.FillChunk, Parallel: c.cfg.FillParallel,
			MaxManifest: oci.MaxManifestSize, Rescued: c.m.FillRescues.Inc},
		Flight: f.Flight, Request: *req, Window: f.hint,
		Source: c.fillSource(f),
		Create: func(size int64, mediaType string) (move.Pending, error) {
			p, err := c.disk.Create(size)
			if err != nil {
				return nil, err
			}
			f.mediaType = mediaType // before the flight opens: see fill.mediaType
			return pending{p}, nil
		},
		Failed: func(err error) {
			if errors.Is(err, oci.ErrUpstreamUnavailable) && !errors.Is(err, oci.ErrUpstreamTimeout) {
				f.setUnreach(err) // the first cause stays
			}
		},
	})
	if err != nil {
		return res.Written, err
	}
	return res.Written, c.commit(f, res.Pending.(pending).PendingFile, req, res.Written)
}

// fillSource is where a fill fetches its bytes from: the one place the
// cache chooses it. It is the fill's route, decided once when the fill was
// keyed (sourceFor), with the retries: every request of the fill, its
// chunks and its resumes, goes through that one route.
func (c *Cache) fillSource(f *fill) move.Source { return c.withRetries(f.from) }

// pending is a pending file of the disk tier as package fill takes it.
type pending struct{ PendingFile }

// File is the pending file, for the flight.
func (p pending) File() flight.File { return p.PendingFile.File() }

// upstreamFault marks err as the registry's doing, as package fill marks
// what it met reading the source: for the cache's own verdicts on a fill
// (its timeout, a stall that gave its slot up).
func upstreamFault(err error) error { return move.Fault(err) }

// commit keeps a verified fill: on disk with its record, in memory when it
// is small and public, and with the keepers when it is public.
func (c *Cache) commit(f *fill, p PendingFile, req *oci.Request, n int64) error {
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
	if !keptElsewhere(f.from.from) {
		c.tellKeepers(held)
	}
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

// tellKeepers tells the keepers of content the disk tier now holds as e,
// when it is public: what came with a client's credentials stays here.
func (c *Cache) tellKeepers(e tier.Entry) {
	if e.Marked() {
		return
	}
	for _, k := range c.keepers {
		k.Keep(e)
	}
}
