package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	move "github.com/cacheyd/cacheyd/fill"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// trickle is a body that sends n bytes and then nothing until ctx ends.
type trickle struct {
	ctx  context.Context
	left int64
	sent chan<- struct{} // told once when the n bytes are out
}

func (r *trickle) Read(p []byte) (int, error) {
	if r.left > 0 {
		n := min(int64(len(p)), r.left)
		clear(p[:n])
		r.left -= n
		if r.left == 0 {
			r.sent <- struct{}{}
		}
		return int(n), nil
	}
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func (r *trickle) Close() error { return nil }

// TestSlowFillsHoldLittleMemory: what a fill holds in memory grows with the
// bytes it received, not with what upstream announced. 200 manifests that
// each announce 1 MiB and then send 64 KiB and stall hold a copy buffer
// each, not the announced megabyte.
func TestSlowFillsHoldLittleMemory(t *testing.T) {
	const fills, announced, sent = 200, 1 << 20, 64 << 10
	sentAll := make(chan struct{}, fills)
	o := OriginFunc(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
		return &oci.Response{Size: announced, MediaType: "application/vnd.oci.image.manifest.v1+json",
			Body: &trickle{ctx: ctx, left: sent, sent: sentAll}}, nil
	})
	c := newTestCache(t, o, func(cfg *Config) {
		cfg.MemoryBytes, cfg.MaxFills, cfg.MaxFillsPerRegistry = 0, fills, fills
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range fills {
		req := &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Registry: "slow.example", Repository: "x",
			Reference: oci.Reference{Digest: oci.FromBytes(fmt.Appendf(nil, "manifest %d", i))}}
		obj, err := c.Get(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		obj.Close() // the client leaves; the fill goes on
	}
	for range fills {
		<-sentAll
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	held := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d stalled fills hold %d KiB of heap (%d KiB each)", fills, held>>10, held/fills>>10)
	if limit := int64(fills) * (move.Buffer + 64<<10); held > limit {
		t.Errorf("%d stalled fills hold %d KiB of heap, want at most %d KiB", fills, held>>10, limit>>10)
	}
}

// gatedOrigin answers every GET at once and holds its body until release,
// counting the fetches running at once, in all and per registry.
type gatedOrigin struct {
	objects map[oci.Digest][]byte
	release chan struct{} // closed: every body goes out
	one     chan struct{} // each send lets one body out
	started chan string   // told the registry of each GET

	mu      sync.Mutex // guards running, max, perMax
	running map[string]int
	total   int
	max     int
	perMax  map[string]int
}

func newGatedOrigin(objects map[oci.Digest][]byte) *gatedOrigin {
	return &gatedOrigin{objects: objects, release: make(chan struct{}), one: make(chan struct{}), started: make(chan string, 100),
		running: map[string]int{}, perMax: map[string]int{}}
}

func (o *gatedOrigin) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	o.running[req.Registry]++
	o.total++
	o.max = max(o.max, o.total)
	o.perMax[req.Registry] = max(o.perMax[req.Registry], o.running[req.Registry])
	o.mu.Unlock()
	o.started <- req.Registry
	data := o.objects[req.Reference.Digest]
	pr, pw := io.Pipe()
	// Stops at release or when the fill gives up.
	go func() {
		select {
		case <-o.release:
			_, _ = pw.Write(data)
			pw.Close()
		case <-o.one:
			_, _ = pw.Write(data)
			pw.Close()
		case <-ctx.Done():
			pw.CloseWithError(ctx.Err())
		}
		o.mu.Lock()
		o.running[req.Registry]--
		o.total--
		o.mu.Unlock()
	}()
	return &oci.Response{Size: int64(len(data)), Body: pr}, nil
}

// releaseOne lets one held body out.
func (o *gatedOrigin) releaseOne() { o.one <- struct{}{} }

// TestFillSlotsBoundConcurrentFills: at most MaxFills fills fetch at once,
// and at most MaxFillsPerRegistry from one registry; the others wait for a
// slot, and past the answer timeout are answered 503 UNAVAILABLE (the
// fills are full), never a gateway timeout that would blame upstream.
func TestFillSlotsBoundConcurrentFills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		registries := []string{"a.example", "a.example", "a.example", "b.example", "b.example", "c.example"}
		objects := map[oci.Digest][]byte{}
		var digests []oci.Digest
		for i := range registries {
			data := fmt.Appendf(nil, "object %d", i)
			digests = append(digests, oci.FromBytes(data))
			objects[oci.FromBytes(data)] = data
		}
		o := newGatedOrigin(objects)
		c := newTestCache(t, o, func(cfg *Config) {
			cfg.MemoryBytes, cfg.MaxFills, cfg.MaxFillsPerRegistry, cfg.AnswerTimeout = 0, 3, 2, 5*time.Second
		})
		var wg sync.WaitGroup
		results := make(chan error, 6)
		objs := make(chan *Object, 6) // held open: their fills have a reader
		for i, registry := range registries {
			wg.Go(func() {
				dg := digests[i]
				req := &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: registry, Repository: "x",
					Reference: oci.Reference{Digest: dg}}
				obj, err := c.Get(t.Context(), req)
				if err == nil {
					objs <- obj
				}
				results <- err
			})
		}
		synctest.Wait() // every fill is fetching or waiting for a slot
		o.mu.Lock()
		running, perMax := o.total, o.perMax["a.example"]
		o.mu.Unlock()
		if running != 3 {
			t.Errorf("%d fills fetching at once, want MaxFills = 3", running)
		}
		if perMax > 2 {
			t.Errorf("%d fills fetching from one registry at once, want at most 2", perMax)
		}
		wg.Wait() // past the answer timeout, the waiting ones are answered
		close(results)
		ok, unavailable := 0, 0
		for err := range results {
			switch e, isOCI := oci.AsError(err); {
			case err == nil:
				ok++
			case isOCI && e.Status == http.StatusServiceUnavailable:
				unavailable++
			default:
				t.Errorf("unexpected answer: %v", err)
			}
		}
		if ok != 3 || unavailable != 3 {
			t.Errorf("%d answered, %d unavailable; want 3 and 3", ok, unavailable)
		}
		close(objs)
		for obj := range objs {
			obj.Close()
		}
		close(o.release)
		c.wg.Wait()
		if len(o.started) != 3 {
			t.Errorf("%d upstream GETs, want 3: the fills that found no slot never asked", len(o.started))
		}
	})
}

// TestHangingUpstreamAnswersInTime: an upstream that accepts and never
// answers costs a client AnswerTimeout, answered as an upstream timeout
// (504 UNAVAILABLE), not a wait as long as every retry; the fill goes on
// retrying in the background until it has made no progress for a stall
// window with nobody reading it, and then gives its slot up.
func TestHangingUpstreamAnswersInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int32
		o := OriginFunc(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
			attempts.Add(1)
			// What the upstream client answers once its header timeout passes.
			select {
			case <-time.After(10 * time.Second):
				return nil, fmt.Errorf("no headers: %w: %w", oci.ErrUpstreamUnavailable, oci.ErrUpstreamTimeout)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		c := newTestCache(t, o, func(cfg *Config) {
			cfg.MemoryBytes, cfg.AnswerTimeout, cfg.FillRetries, cfg.FillStall = 0, 5*time.Second, 4, 25*time.Second
		})
		start := time.Now()
		_, err := c.Get(t.Context(), blobReq(oci.FromBytes([]byte("hang"))))
		if waited := time.Since(start); waited != 5*time.Second {
			t.Errorf("the client waited %s, want the answer timeout", waited)
		}
		if !errors.Is(err, oci.ErrUpstreamTimeout) || !errors.Is(err, oci.ErrUpstreamUnavailable) {
			t.Errorf("err = %v, want an upstream timeout", err)
		}
		c.wg.Wait()
		// Attempts start at 0 s, about 10.3 s and about 21 s (each hangs
		// for 10 s, with a backoff between); the window ends at 25 s.
		if n := attempts.Load(); n != 3 {
			t.Errorf("%d upstream attempts, want the 3 that started within the stall window", n)
		}
		if n := testutil.ToFloat64(c.m.FillsStopped.WithLabelValues("unread")); n != 1 {
			t.Errorf("fills stopped unread = %v, want 1", n)
		}
		if time.Since(start) != 25*time.Second {
			t.Errorf("the fill ended after %s, want the stall window", time.Since(start))
		}
	})
}

// TestHangingTagLookupAnswersInTime: a tag whose upstream HEAD hangs is
// answered within AnswerTimeout: with the last known answer when there is
// one, else as an upstream timeout.
func TestHangingTagLookupAnswersInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		manifest := []byte(`{"schemaVersion":2}`)
		dg := o.Add(manifest, "application/vnd.oci.image.manifest.v1+json")
		o.Tag("v1", dg)
		var hang atomic.Bool
		c := newTestCache(t, OriginFunc(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
			if hang.Load() && req.Method == http.MethodHead {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return o.Fetch(ctx, req)
		}), func(cfg *Config) { cfg.MemoryBytes, cfg.AnswerTimeout, cfg.TagTTL = 0, 5*time.Second, time.Minute })
		if _, err := readAllIfBody(mustGet(t, c, tagReq(http.MethodGet, "v1"))); err != nil {
			t.Fatal(err)
		}
		hang.Store(true)
		time.Sleep(2 * time.Minute) // the tag is past its TTL (fake time)
		start := time.Now()
		obj := mustGet(t, c, tagReq(http.MethodGet, "v1"))
		obj.Close()
		if waited := time.Since(start); waited != 5*time.Second || obj.Digest != dg {
			t.Errorf("stale answer after %s (digest %s), want the last answer after the answer timeout", waited, obj.Digest.Short())
		}
		start = time.Now()
		_, err := c.Get(t.Context(), tagReq(http.MethodGet, "v2"))
		if waited := time.Since(start); waited != 5*time.Second || !errors.Is(err, oci.ErrUpstreamTimeout) {
			t.Errorf("unknown tag: %v after %s, want an upstream timeout after the answer timeout", err, waited)
		}
		c.cancel() // ends the lookups still hanging
	})
}

func mustGet(t *testing.T, c *Cache, req *oci.Request) *Object {
	t.Helper()
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// TestUnreachableOriginAnswersAtOnce: an origin that cannot be reached is
// answered at once (a 502, so that containerd tries its next host), not
// after every retry; the fill retries in the background.
func TestUnreachableOriginAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int32
		o := OriginFunc(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
			attempts.Add(1)
			return nil, fmt.Errorf("connect: refused: %w", oci.ErrUpstreamUnavailable)
		})
		c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes, cfg.FillRetries = 0, 4 })
		start := time.Now()
		_, err := c.Get(t.Context(), blobReq(oci.FromBytes([]byte("far away"))))
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the client waited %s for an unreachable origin, want no wait", waited)
		}
		if !errors.Is(err, oci.ErrUpstreamUnavailable) || errors.Is(err, oci.ErrUpstreamTimeout) {
			t.Errorf("err = %v, want unreachable, not a timeout", err)
		}
		c.wg.Wait()
		if n := attempts.Load(); n != 5 {
			t.Errorf("%d attempts, want FillRetries+1 = 5 in the background", n)
		}
	})
}
