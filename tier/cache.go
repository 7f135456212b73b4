package tier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Config configures a Cache. The zero value of every field but Dir is usable.
type Config struct {
	// Dir holds the disk tier. Required. Everything in it belongs to the
	// cache: it may be wiped at any time.
	Dir string
	// MemoryBytes is the memory tier's budget in bytes. Zero disables it.
	MemoryBytes int64
	// MemoryMaxObject is the largest object kept in memory, in bytes.
	// Zero means 1 MiB.
	MemoryMaxObject int64
	// DiskBytes is the disk tier's budget in bytes; least recently used
	// objects are evicted beyond it. Zero means unlimited.
	DiskBytes int64
	// TagTTL is how long a tag's answer is used before it is asked upstream
	// again. Zero means ask every time.
	TagTTL time.Duration
	// TagStaleMax is how long past TagTTL the last known answer for a tag is
	// served when upstream cannot answer. Zero means 24h; negative, never.
	TagStaleMax time.Duration
	// FillTimeout bounds one fill from its upstream request to its last
	// byte. Zero means 30 minutes.
	FillTimeout time.Duration
	// FillIdleTimeout abandons an upstream transfer that sends nothing for
	// this long; the fill then resumes (or retries) like after a reset.
	// Zero means 30s.
	FillIdleTimeout time.Duration
	// FillRetries is how many failed attempts in a row a fill survives
	// (unreachable, 5xx, 429, a body cut short); an attempt that wrote
	// bytes does not count. Zero means 4; negative, none.
	FillRetries int
	// RetryBackoff is the first wait between attempts, doubled after each
	// failure in a row, with jitter; upstream's Retry-After wins. Zero means
	// 200ms.
	RetryBackoff time.Duration
	// AnswerTimeout bounds how long a request waits for upstream to start
	// answering: for a fill to learn its size (including its wait for a
	// fill slot), or for a tag to resolve. Past it the request is answered
	// with an error wrapping oci.ErrUpstreamTimeout (504) while the shared
	// work goes on in the background within its own bounds. Zero means 5s.
	AnswerTimeout time.Duration
	// MaxFills bounds the fills fetching from upstream at once; more wait
	// for a slot (fillslots.go). Zero means 256.
	MaxFills int
	// MaxFillsPerRegistry bounds the fills fetching from one registry at
	// once. Zero means 64.
	MaxFillsPerRegistry int
	// Metrics receives counts; nil means counts go nowhere.
	Metrics *metrics.Metrics
	// Logger receives background fill outcomes; nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultMemoryMaxObject = 1 << 20
	defaultTagStaleMax     = 24 * time.Hour
	defaultFillTimeout     = 30 * time.Minute
	defaultFillRetries     = 4
	defaultFillIdleTimeout = 30 * time.Second
	defaultRetryBackoff    = 200 * time.Millisecond
	defaultAnswerTimeout   = 5 * time.Second
	defaultMaxFills        = 256
	defaultMaxFillsPerReg  = 64
	// tagTimeout bounds one upstream tag resolution, which is shared by
	// every request waiting for it and so does not run on any one of
	// their contexts.
	tagTimeout = 30 * time.Second
	// copyBuffer is the size of one write of a fill: readers are woken
	// once per write. It is also most of what a running fill holds in
	// memory, so MaxFills × copyBuffer bounds the fills' buffers.
	copyBuffer = 128 << 10
)

// Cache is the tiered read path.
type Cache struct {
	cfg    Config
	origin Origin
	mem    *memory // nil when the memory tier is disabled
	disk   *disk
	tags   *tagCache
	log    *slog.Logger
	m      *metrics.Metrics

	// ctx is the cache's own context: fills and shared tag lookups run on
	// it, so no single client can cancel them. Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // counts running fills; Close waits for them

	mu    sync.Mutex // guards fills
	fills map[fillKey]*fill

	private *privacy   // checks of client credentials for private content
	slots   *fillSlots // bounds the fills fetching at once

	tagFlight singleflight.Group // one upstream tag lookup per tag at a time
}

// fillKey names a fill: the same digest asked for as a blob and as a
// manifest is two fills, because only the manifest fill learns a media type.
type fillKey struct {
	digest   oci.Digest
	manifest bool
	// cred is set for a fill made with a client's credentials (see
	// private.go): only requests with the same credential join it.
	cred string
	// source is set for a fill of marked content for a registry/repository
	// that is not one of its sources: only requests for that same source
	// join it, and it never looks at what the tiers hold.
	source string
}

// New opens the cache in cfg.Dir: pending leftovers of an earlier run are
// removed and committed content is served at once (warm restart).
func New(cfg Config, origin Origin) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("tier: Config.Dir is required")
	}
	if cfg.MemoryMaxObject == 0 {
		cfg.MemoryMaxObject = defaultMemoryMaxObject
	}
	if cfg.TagStaleMax == 0 {
		cfg.TagStaleMax = defaultTagStaleMax
	}
	if cfg.FillTimeout == 0 {
		cfg.FillTimeout = defaultFillTimeout
	}
	if cfg.FillIdleTimeout == 0 {
		cfg.FillIdleTimeout = defaultFillIdleTimeout
	}
	if cfg.FillRetries == 0 {
		cfg.FillRetries = defaultFillRetries
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = defaultRetryBackoff
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = defaultAnswerTimeout
	}
	if cfg.MaxFills <= 0 {
		cfg.MaxFills = defaultMaxFills
	}
	if cfg.MaxFillsPerRegistry <= 0 {
		cfg.MaxFillsPerRegistry = defaultMaxFillsPerReg
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mem, err := newMemory(cfg.MemoryBytes, cfg.MemoryMaxObject, cfg.Metrics)
	if err != nil {
		return nil, err
	}
	d, err := openDisk(cfg.Dir, cfg.DiskBytes, cfg.Metrics, cfg.Logger)
	if err != nil {
		mem.close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		cfg: cfg, origin: origin, mem: mem, disk: d, tags: newTagCache(),
		log: cfg.Logger, m: cfg.Metrics, ctx: ctx, cancel: cancel,
		fills: map[fillKey]*fill{}, private: newPrivacy(),
		slots: newFillSlots(cfg.MaxFills, cfg.MaxFillsPerRegistry),
	}, nil
}

// Close aborts fills in flight, waits for them to clean up, records a clean
// stop on disk and releases the memory tier.
func (c *Cache) Close() error {
	c.cancel()
	c.wg.Wait()
	c.mem.close()
	return c.disk.close()
}

// Get answers a request for a manifest or blob. req.Method "HEAD" answers
// the headers only (an upstream HEAD on a miss, never a GET). Errors that
// are a registry's answer (404, 401 with its challenge, ...) are *oci.Error.
func (c *Cache) Get(ctx context.Context, req *oci.Request) (*Object, error) {
	switch {
	case req.Kind != oci.KindManifest && req.Kind != oci.KindBlob:
		return nil, fmt.Errorf("tier: cannot get %s", req.Kind)
	case req.Kind == oci.KindBlob && !req.Reference.IsDigest():
		return nil, oci.ErrDigestInvalid("blob reference must be a digest")
	case req.Kind == oci.KindManifest && !req.Reference.IsDigest():
		return c.getTag(ctx, req)
	}
	return c.getDigest(ctx, req)
}

// getDigest answers for immutable content: memory → disk → a fill in
// flight → a new fill. Marked content is served only as private.go says.
func (c *Cache) getDigest(ctx context.Context, req *oci.Request) (*Object, error) {
	return c.serveDigest(ctx, req, fillKey{digest: req.Reference.Digest, manifest: req.Kind == oci.KindManifest})
}

// privateFill serves req from a fill made with the client's credentials,
// once upstream has accepted them for this repository and digest.
func (c *Cache) privateFill(ctx context.Context, req *oci.Request, key fillKey) (*Object, error) {
	if err := c.authorize(ctx, req); err != nil {
		return nil, err
	}
	key.cred = credID(req.Authorization)
	return c.serveDigest(ctx, req, key)
}

// serveDigest looks up and fills under key.
func (c *Cache) serveDigest(ctx context.Context, req *oci.Request, key fillKey) (*Object, error) {
	head := req.Method == http.MethodHead
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
		if head {
			return c.head(ctx, req, key)
		}
		if key.cred == "" && req.Authorization != "" && c.private.recentlyRefused(sourceOf(req)) {
			return c.privateFill(ctx, req, key)
		}
		if f, isNew = c.joinOrStart(req, key); f != nil {
			break
		}
	}
	if f == nil {
		return nil, fmt.Errorf("tier: %s vanished while being looked up", key.digest.Short())
	}
	if isNew {
		c.m.Misses.WithLabelValues(req.Kind.String()).Inc()
	} else {
		c.m.FillsJoined.Inc()
	}
	wctx, cancel := context.WithTimeoutCause(ctx, c.cfg.AnswerTimeout, errAnswerTimeout)
	err := f.waitReady(wctx)
	cancel()
	if err != nil {
		f.release()
		switch {
		case refused(err) && key.cred == "":
			c.private.refuse(sourceOf(req))
			if req.Authorization == "" {
				return nil, err // upstream's challenge, for the client to answer
			}
			// Upstream refuses cacheyd: fill with the client's own
			// credentials and keep the result marked private.
			return c.privateFill(ctx, req, key)
		case errors.Is(err, errNoRoom), errors.Is(err, errDiskFailed):
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
		Digest: key.digest, MediaType: mediaTypeFor(req.Kind, f.mediaType), Size: f.size,
		Source: src, ctx: ctx, fill: f,
	}, nil
}

// errAnswerTimeout is why a request stopped waiting for upstream's answer.
var errAnswerTimeout = fmt.Errorf("no answer from upstream within the answer timeout: %w: %w",
	oci.ErrUpstreamTimeout, oci.ErrUpstreamUnavailable)

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

// joinOrStart returns the fill in flight for key with a reference taken, or
// starts one. It returns nil when the content was committed meanwhile.
func (c *Cache) joinOrStart(req *oci.Request, key fillKey) (f *fill, isNew bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fills[key]; f != nil && f.acquire() {
		return f, false
	}
	// Re-check the disk under c.mu: a fill commits to disk before it
	// unregisters (under c.mu), so a request that missed on disk and then
	// finds no fill here may have raced with a commit. Without this check it
	// would fetch the same content again. A fill for a source elsewhere
	// does not care what is committed.
	if key.source == "" {
		if e, ok := c.disk.lookup(key.digest); ok && (!key.manifest || e.mediaType != "") {
			return nil, false
		}
	}
	f = newFill(key.digest, req.Kind)
	f.refs++ // the caller's reference, beside the writer's
	c.fills[key] = f
	c.m.FillsInFlight.Inc()
	c.wg.Add(1)
	origin := *req
	origin.Method, origin.Offset = http.MethodGet, 0
	if key.cred == "" {
		origin.Authorization = "" // as cacheyd itself
	}
	// Stopped by the fill's end: success, upstream failure, its timeout or
	// Close cancelling c.ctx.
	go c.runFill(f, key, &origin)
	return f, true
}

// runFill waits for a fill slot, fetches one object into a pending file,
// verifies it, commits it and unregisters the fill.
func (c *Cache) runFill(f *fill, key fillKey, req *oci.Request) {
	defer c.wg.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.FillTimeout)
	defer cancel()
	var n int64
	sctx, scancel := context.WithTimeout(ctx, c.cfg.AnswerTimeout)
	c.m.FillsWaiting.Inc()
	release, err := c.slots.acquire(sctx, req.Registry)
	c.m.FillsWaiting.Dec()
	scancel()
	if err == nil {
		n, err = c.fetchInto(ctx, f, req)
		release()
	}
	if err != nil {
		err = fmt.Errorf("fill %s: %w", f.digest.Short(), err)
	}
	// Unregister before telling the readers: a request that sees this
	// fill's outcome and asks again must start a new fill (or hit the
	// disk, where a success was committed), never join a finished one.
	c.mu.Lock()
	delete(c.fills, key)
	c.mu.Unlock()
	switch {
	case f.file != nil:
		f.finish(err)
	default: // failed before upstream answered
		f.mu.Lock()
		f.done, f.err = true, err
		f.mu.Unlock()
		close(f.ready)
	}
	f.release()
	c.m.FillsInFlight.Dec()
	attrs := []any{"registry", req.Registry, "repository", req.Repository, "digest", f.digest.Short(),
		"kind", req.Kind.String(), "bytes", n, "duration", time.Since(start).Round(time.Millisecond)}
	if err != nil {
		c.m.Fills.WithLabelValues("error").Inc()
		c.log.Warn("fill failed", append(attrs, "err", err)...)
		return
	}
	c.m.Fills.WithLabelValues("ok").Inc()
	c.log.Info("fill done", attrs...)
}

// head answers a HEAD for content no tier holds: from a fill in flight if
// there is one, else with an upstream HEAD (never a GET).
func (c *Cache) head(ctx context.Context, req *oci.Request, key fillKey) (*Object, error) {
	c.mu.Lock()
	f := c.fills[key]
	c.mu.Unlock()
	if f != nil {
		wctx, cancel := context.WithTimeoutCause(ctx, c.cfg.AnswerTimeout, errAnswerTimeout)
		err := f.waitReady(wctx)
		cancel()
		if err == nil {
			c.m.FillsJoined.Inc()
			return &Object{Digest: key.digest, MediaType: mediaTypeFor(req.Kind, f.mediaType), Size: f.size, Source: SourceFillJoined}, nil
		}
		if errors.Is(err, errAnswerTimeout) || ctx.Err() != nil {
			return nil, err
		}
	}
	up := *req
	up.Authorization = ""
	resp, err := c.origin.Fetch(ctx, &up)
	src := SourceUpstream
	if refused(err) && req.Authorization != "" {
		resp, err = c.origin.Fetch(ctx, req)
		src = SourcePassThrough
	}
	if err != nil {
		return nil, err
	}
	return &Object{Digest: key.digest, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size, Source: src}, nil
}

// passThrough streams content from upstream with the client's own
// credentials. It is not cached: cacheyd could not fetch it as itself, so it
// is not public.
func (c *Cache) passThrough(ctx context.Context, req *oci.Request) (*Object, error) {
	up := *req
	up.Method, up.Offset = http.MethodGet, 0
	resp, err := c.origin.Fetch(ctx, &up)
	if err != nil {
		return nil, err
	}
	c.m.PassThrough.WithLabelValues(req.Kind.String()).Inc()
	dg := req.Reference.Digest
	if dg == "" {
		dg = resp.Digest
	}
	return &Object{
		Digest: dg, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size,
		Source: SourcePassThrough, ctx: ctx, pass: resp.Body, passOffset: resp.Offset,
	}, nil
}

// streamUncached streams content from upstream as cacheyd without keeping
// it, for when the disk tier cannot take it (larger than the budget, or the
// file system is full). Each such request is its own upstream fetch.
func (c *Cache) streamUncached(ctx context.Context, req *oci.Request, cause error) (*Object, error) {
	c.m.Uncached.WithLabelValues(uncachedReason(cause)).Inc()
	up := *req
	up.Method, up.Offset, up.Authorization = http.MethodGet, 0, ""
	resp, err := c.origin.Fetch(ctx, &up)
	if err != nil {
		return nil, err
	}
	return &Object{
		Digest: req.Reference.Digest, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size,
		Source: SourceUncached, ctx: ctx, pass: &verifyingReader{r: resp.Body, h: req.Reference.Digest.NewHash(), want: req.Reference.Digest, size: resp.Size},
		passOffset: resp.Offset,
	}, nil
}

// uncachedReason labels why content was not kept: "budget" when the disk
// budget had no room for it beside the fills in flight, "disk" when the file
// system failed (full, read-only, an I/O error).
func uncachedReason(err error) string {
	if errors.Is(err, errNoRoom) {
		return "budget"
	}
	return "disk"
}

// refused reports whether upstream refused the identity it was asked with.
func refused(err error) bool {
	e, ok := oci.AsError(err)
	return ok && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

func kindOf(manifest bool) oci.Kind {
	if manifest {
		return oci.KindManifest
	}
	return oci.KindBlob
}

// mediaTypeFor is the Content-Type to answer with: a manifest's own media
// type, and application/octet-stream for every blob.
func mediaTypeFor(k oci.Kind, mediaType string) string {
	if k == oci.KindManifest && mediaType != "" {
		return mediaType
	}
	return oci.BlobMediaType
}
