package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// getDigest answers for immutable content: memory → disk → a fill in
// flight → a new fill. Marked content is served only as private.go says.
func (c *Cache) getDigest(ctx context.Context, req *oci.Request) (*Object, error) {
	rt := c.sourceFor(req)
	return c.serveDigest(ctx, req, fillKey{digest: req.Reference.Digest, manifest: req.Kind == oci.KindManifest,
		registry: req.Registry, route: rt.key}, rt)
}

// serveDigest looks up and fills under key; a fill it starts fetches
// through rt.
func (c *Cache) serveDigest(ctx context.Context, req *oci.Request, key fillKey, rt source) (*Object, error) {
	var f *fill
	isNew := false
	// Twice at most: content committed between a miss and the start of a
	// fill is looked up again, and may then be marked content elsewhere.
	for range 2 {
		if key.source == "" {
			obj, err := c.fromTiers(ctx, req, &key)
			if err != nil || obj != nil {
				return c.accepted(ctx, req, obj, err)
			}
		}
		if req.Method == http.MethodHead {
			return c.head(ctx, req, key)
		}
		if key.cred == "" && req.Authorization != "" && c.private.recentlyRefused(sourceOf(req)) {
			return c.privateFill(ctx, req, key, rt)
		}
		var err error
		if f, isNew, err = c.joinOrStart(req, key, rt); err != nil {
			return nil, err
		}
		if f != nil {
			break
		}
	}
	if f == nil {
		return nil, fmt.Errorf("cache: %s vanished while being looked up", key.digest.Short())
	}
	if isNew {
		c.m.Misses.WithLabelValues(req.Kind.String()).Inc()
	} else {
		c.m.FillsJoined.Inc()
	}
	if err := c.waitAnswer(ctx, f); err != nil {
		f.Release()
		switch {
		case oci.Refused(err) && key.cred == "":
			c.private.refuse(sourceOf(req))
			if req.Authorization == "" {
				return nil, err // upstream's challenge, for the client to answer
			}
			// Upstream refuses cacheyd: fill with the client's own
			// credentials and keep the result marked private.
			return c.privateFill(ctx, req, key, rt)
		case errors.Is(err, tier.ErrNoRoom), errors.Is(err, tier.ErrFailed):
			// The disk cannot take it; the pull must not fail for that.
			return c.streamUncached(ctx, req, err)
		}
		return nil, err
	}
	src := SourceFillJoined
	if isNew {
		src = SourceFillNew
	}
	return &Object{
		Digest: key.digest, MediaType: mediaTypeFor(req.Kind, f.mediaType), Size: f.Size(),
		Source: src, ctx: ctx, fill: f,
	}, nil
}

// privateFill serves req from a fill made with the client's credentials,
// once upstream has accepted them for this repository and digest.
func (c *Cache) privateFill(ctx context.Context, req *oci.Request, key fillKey, rt source) (*Object, error) {
	if err := c.authorize(ctx, req); err != nil {
		return nil, err
	}
	key.cred = credID(req.Authorization)
	return c.serveDigest(ctx, req, key, rt)
}

// errAnswerTimeout is why a request stopped waiting for upstream's answer.
var errAnswerTimeout = fmt.Errorf("no answer from upstream within the answer timeout: %w: %w",
	oci.ErrUpstreamTimeout, oci.ErrUpstreamUnavailable)

// waitAnswer waits for f to learn its size, for at most AnswerTimeout, or
// until a first attempt found the origin unreachable. A fill that is still
// waiting for a fill slot then is answered as such (503), not as upstream
// being slow.
func (c *Cache) waitAnswer(ctx context.Context, f *fill) error {
	wctx, cancel := context.WithTimeoutCause(ctx, c.cfg.AnswerTimeout, errAnswerTimeout)
	defer cancel()
	wctx, stop := withCauseOf(wctx, f.unreachable)
	defer stop()
	err := f.Wait(wctx)
	if errors.Is(err, errAnswerTimeout) && !f.slotted.Load() {
		return errTooManyFills(f.registry)
	}
	return err
}

// withCauseOf returns ctx, also cancelled, with its cause, when other is.
func withCauseOf(ctx, other context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(other, func() {
		if cause := context.Cause(other); cause != context.Canceled {
			cancel(cause)
		}
	})
	return ctx, func() { stop(); cancel(nil) }
}

// accepted passes on a tier's answer, or asks upstream instead for a
// manifest whose media type the client does not accept.
func (c *Cache) accepted(ctx context.Context, req *oci.Request, obj *Object, err error) (*Object, error) {
	if err != nil {
		return nil, err
	}
	if req.Kind == oci.KindManifest && !accepts(req.Accept, obj.MediaType) {
		obj.Close()
		return c.fetchAccepting(ctx, req)
	}
	obj.ctx = ctx
	return obj, nil
}

// fromTiers looks key's digest up in memory, then on disk. A manifest needs
// its media type; content known only as a blob does not answer a manifest
// request. Marked content is served as private.go says: it returns
// upstream's refusal for a private source that does not accept the
// request's credentials, and for a request elsewhere a miss, with
// key.source set so that the fill is the request's own.
func (c *Cache) fromTiers(ctx context.Context, req *oci.Request, key *fillKey) (*Object, error) {
	dg, manifest := key.digest, key.manifest
	head := req.Method == http.MethodHead
	// The memory tier only ever holds public content (see private.go).
	if data, e, ok := c.mem.Get(dg); ok && (!manifest || e.MediaType != "") {
		c.memHits.Inc()
		o := &Object{Digest: dg, MediaType: mediaTypeFor(kindOf(manifest), e.MediaType), Size: e.Size, Source: SourceMemory}
		if !head {
			o.data = data
		}
		return o, nil
	}
	var (
		f   HeldFile
		e   tier.Entry
		err error
	)
	if head {
		e, err = c.disk.Stat(ctx, dg)
	} else {
		f, e, err = c.disk.OpenFile(dg)
	}
	ok := err == nil && (!manifest || e.MediaType != "")
	if ok && e.Marked() {
		switch accessFor(e, sourceOf(req)) {
		case accessElsewhere:
			key.source = sourceOf(req)
			ok = false
		case accessCheck:
			if err := c.authorize(ctx, req); err != nil {
				closeQuiet(f)
				return nil, err
			}
		}
	}
	if !ok {
		closeQuiet(f)
		return nil, nil
	}
	o := &Object{Digest: dg, MediaType: mediaTypeFor(kindOf(manifest), e.MediaType), Size: e.Size, Source: SourceDisk, file: f}
	// A small object found only on disk (after a restart, or evicted from
	// memory) goes back into memory, so that the next request costs no
	// open, read and close. After an unclean stop its bytes are checked
	// here on the way (ReadAt verifies first). The copy is claimed from the
	// read memory budget (readmem.go) until the memory tier has it; without
	// room it is not made, and the file is served.
	var claim *readClaim
	if f != nil && !e.Marked() && c.mem.Fits(e.Size) {
		claim = c.reads.forCopy(req.Registry, e.Size)
	}
	if claim != nil {
		defer claim.release()
		data := make([]byte, e.Size)
		if _, err := f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
			closeQuiet(f)
			if errors.Is(err, tier.ErrMismatch) {
				return nil, nil // removed: fetched again
			}
			return nil, fmt.Errorf("cache: read %s: %w", dg.Short(), err)
		}
		closeQuiet(f)
		c.mem.Set(e, data)
		o.file, o.data = nil, data
	}
	c.diskHits.Inc()
	return o, nil
}

func closeQuiet(f HeldFile) {
	if f != nil {
		_ = f.Close()
	}
}
