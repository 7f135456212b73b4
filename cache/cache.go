package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Cache. The zero value of every field is usable,
// except Dir's when the default tiers are opened from it.
//
// Dir, MemoryBytes, MemoryMaxObject and DiskBytes describe the default
// tiers, memory and disk: the composition root (internal/app) opens them
// from these fields (Dir required) and hands them to New (Tiers), which
// reads none of them.
type Config struct {
	// Dir holds the disk tier. Everything in it belongs to the cache: it
	// may be wiped at any time.
	Dir string
	// MemoryBytes is the memory tier's budget in bytes. Zero disables it.
	MemoryBytes int64
	// MemoryMaxObject is the largest object kept in memory, in bytes.
	// Zero means 1 MiB.
	MemoryMaxObject int64
	// DiskBytes is the disk tier's budget in bytes, fills in flight
	// included; least recently used objects are evicted beyond it. Zero
	// means unlimited.
	DiskBytes int64
	// TagTTL is how long a tag's answer, or a listing's, is used before it
	// is asked upstream again. Zero means ask every time.
	TagTTL time.Duration
	// TagStaleMax is how long past TagTTL the last known answer for a tag
	// (or a listing) is served when upstream cannot answer. Zero means
	// 24h; negative, never.
	TagStaleMax time.Duration
	// FillTimeout bounds one fill from its upstream request to its last
	// byte. Zero means 30 minutes.
	FillTimeout time.Duration
	// FillIdleTimeout abandons an upstream transfer that sends nothing for
	// this long; the fill then resumes (or retries) like after a reset.
	// Zero means 30s.
	FillIdleTimeout time.Duration
	// FillRetries is how many failed attempts in a row without progress a
	// fill (and the first lookup of a tag) survives; see package retry.
	// Zero means 4; negative, none.
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
	// FillChunk is the largest region of a blob fetched in one request: a
	// blob larger than it is fetched as regions, in parallel (package fill).
	// Zero means 16 MiB.
	FillChunk int64
	// FillParallel is how many requests one fill makes to the origin at
	// once in order, with up to half as many more for readers no request
	// is heading for (package fill). Zero means 4; 1 fetches every object as
	// one stream.
	FillParallel int
	// MaxFills bounds the fills fetching from upstream at once; more wait
	// for a slot (slots.go). Zero means 256.
	MaxFills int
	// MaxFillsPerRegistry bounds the fills fetching from one registry at
	// once. Zero means 64.
	MaxFillsPerRegistry int
	// FillStall is the window over which a fill's progress is judged: one
	// that writes less than 64 KiB in it is stalled, and gives its slot up
	// when nobody reads it, or when a fill of another registry waits for
	// one (slots.go). Zero means 10s.
	FillStall time.Duration
	// ReadMemory bounds, in bytes, what is read whole into memory at once:
	// manifests by a tag whose registry names no digest, listings, and
	// copies of committed objects into the memory tier (readmem.go). One
	// registry may hold at most a quarter of it; a read that finds no room
	// is answered 503 at once (a copy into memory is skipped). A listing
	// is read in pieces and then copied whole, so the largest (4 MiB) needs
	// 8 MiB of a quarter for a moment. Zero (or less) means 64 MiB.
	ReadMemory int64
	// Metrics receives counts; nil means counts go nowhere.
	Metrics *metrics.Metrics
	// Logger receives background fill outcomes; nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultTagStaleMax    = 24 * time.Hour
	defaultFillTimeout    = 30 * time.Minute
	defaultAnswerTimeout  = 5 * time.Second
	defaultMaxFills       = 256
	defaultFillChunk      = 16 << 20
	defaultFillParallel   = 4
	defaultMaxFillsPerReg = 64
	defaultFillStall      = 10 * time.Second
	defaultReadMemory     = 64 << 20
	// tagTimeout bounds one upstream tag resolution, which is shared by
	// every request waiting for it and so does not run on any one of
	// their contexts.
	tagTimeout = 30 * time.Second
)

// Cache is the read path.
type Cache struct {
	cfg      Config
	origin   Origin     // one attempt per request
	mem      MemoryTier // noMemory when there is none
	disk     DiskTier
	keepers  []Keeper // told of public commits (tellKeepers)
	tags     *tagTable
	listings *listingTable
	absent   *absentTable  // listings upstream answered 404 (absent.go)
	failures *failureTable // fills upstream failed a moment ago
	private  *privacy      // checks of client credentials for private content
	slots    *fillSlots    // bounds the fills fetching at once
	reads    *readMemory   // bounds what is read whole into memory
	log      *slog.Logger
	m        *metrics.Metrics
	// memHits and diskHits are m.Hits' children, looked up once: a hit
	// pays for nothing it need not.
	memHits, diskHits prometheus.Counter

	// ctx is the cache's own context: fills and shared tag lookups run on
	// it, so no single client can cancel them. Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // counts running fills; Close waits for them
	bg     sync.WaitGroup // the slots' watch; Close waits for it

	mu    sync.Mutex // guards fills
	fills map[fillKey]*fill

	tagFlight  singleflight.Group // one upstream tag lookup per tag at a time
	listFlight singleflight.Group // one upstream lookup per listing at a time
}

// New returns the cache over tiers, which fetches through origin. What the
// disk tier holds is served at once (warm restart). The tiers stay their
// opener's: it closes them after Close.
func New(cfg Config, origin Origin, tiers Tiers) (*Cache, error) {
	if tiers.Disk == nil {
		return nil, errors.New("cache: Tiers.Disk is required")
	}
	if tiers.Memory == nil {
		tiers.Memory = noMemory{}
	}
	if cfg.TagStaleMax == 0 {
		cfg.TagStaleMax = defaultTagStaleMax
	}
	if cfg.FillTimeout == 0 {
		cfg.FillTimeout = defaultFillTimeout
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = defaultAnswerTimeout
	}
	if cfg.FillChunk <= 0 {
		cfg.FillChunk = defaultFillChunk
	}
	if cfg.FillParallel <= 0 {
		cfg.FillParallel = defaultFillParallel
	}
	if cfg.MaxFills <= 0 {
		cfg.MaxFills = defaultMaxFills
	}
	if cfg.MaxFillsPerRegistry <= 0 {
		cfg.MaxFillsPerRegistry = defaultMaxFillsPerReg
	}
	if cfg.FillStall <= 0 {
		cfg.FillStall = defaultFillStall
	}
	if cfg.ReadMemory <= 0 {
		cfg.ReadMemory = defaultReadMemory
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	slots := newFillSlots(cfg.MaxFills, cfg.MaxFillsPerRegistry, cfg.FillStall, slotMetrics{
		waiting: cfg.Metrics.FillsWaiting.Add,
		stopped: func(reason string) { cfg.Metrics.FillsStopped.WithLabelValues(reason).Inc() },
	})
	c := &Cache{
		cfg: cfg, origin: origin, mem: tiers.Memory, disk: tiers.Disk, keepers: tiers.Keepers,
		tags: newTagTable(), listings: newListingTable(), absent: newAbsentTable(),
		failures: newFailureTable(),
		private:  newPrivacy(), slots: slots, reads: newReadMemory(cfg.ReadMemory, cfg.Metrics),
		log: cfg.Logger, m: cfg.Metrics, ctx: ctx, cancel: cancel, fills: map[fillKey]*fill{},
		memHits: cfg.Metrics.Hits.WithLabelValues("memory"), diskHits: cfg.Metrics.Hits.WithLabelValues("disk"),
	}
	// Stops when Close cancels c.ctx.
	c.bg.Go(func() { slots.watch(ctx) })
	return c, nil
}

// Close aborts fills in flight and waits for them to clean up. The tiers
// are left to their opener, to close once Close has returned: nothing of
// the cache writes into them any more.
func (c *Cache) Close() error {
	c.cancel()
	c.wg.Wait()
	c.bg.Wait()
	return nil
}

// Get answers a request for a manifest or blob. req.Method "HEAD" answers
// the headers only (an upstream HEAD on a miss, never a GET). Errors that
// are a registry's answer (404, 401 with its challenge, ...) are *oci.Error.
func (c *Cache) Get(ctx context.Context, req *oci.Request) (*Object, error) {
	switch {
	case req.Kind != oci.KindManifest && req.Kind != oci.KindBlob:
		return nil, fmt.Errorf("cache: cannot get %s", req.Kind)
	case req.Kind == oci.KindBlob && !req.Reference.IsDigest():
		return nil, oci.ErrDigestInvalid("blob reference must be a digest")
	case req.Kind == oci.KindManifest && !req.Reference.IsDigest():
		return c.getTag(ctx, req)
	}
	return c.getDigest(ctx, req)
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
