package cache

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

const manifestType = "application/vnd.oci.image.manifest.v1+json"

// TestDigestlessTagFetchedOnce: 200 clients at once GET a tag whose
// registry names no digest on HEAD. The registry sees one GET, every client
// gets the manifest, and the memory held for reading it is one read's: the
// budget's high-water mark is the manifest's size.
func TestDigestlessTagFetchedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const clients, size = 200, 1 << 20
		o := origintest.New()
		manifest := randomBytes(t, size)
		o.Tag("v1", o.Add(manifest, manifestType))
		gate := make(chan struct{})
		c := newTestCache(t, origintest.NoDigest(origintest.Gate(o, gate)), nil)
		var wg sync.WaitGroup
		wrong := make(chan error, clients)
		for range clients {
			wg.Go(func() {
				obj, err := c.Get(t.Context(), tagReq(http.MethodGet, "v1"))
				if err != nil {
					wrong <- err
					return
				}
				if data, err := readAllIfBody(obj); err != nil || !bytes.Equal(data, manifest) {
					wrong <- errors.Join(errors.New("wrong manifest"), err)
				}
			})
		}
		synctest.Wait() // every client is waiting, the GET held at the gate
		close(gate)
		wg.Wait()
		close(wrong)
		for err := range wrong {
			t.Errorf("client: %v", err)
		}
		if n := o.Count(http.MethodGet, oci.KindManifest, "v1"); n != 1 {
			t.Errorf("%d upstream GETs of the tag, want 1", n)
		}
		if peak := c.reads.highWater(); peak != size {
			t.Errorf("read memory high water %d, want %d: one read of the manifest", peak, size)
		}
		if held := c.reads.inUseBy(""); held != 0 {
			t.Errorf("%d bytes of read memory still held, want 0", held)
		}
	})
}

// drip is a body that sends left bytes, then nothing until ctx ends; it
// tells ended when it returns.
type drip struct {
	ctx   context.Context
	left  int
	ended chan<- struct{}
}

func (d *drip) Read(p []byte) (int, error) {
	if d.left > 0 {
		n := min(len(p), d.left)
		clear(p[:n])
		d.left -= n
		return n, nil
	}
	<-d.ctx.Done()
	d.ended <- struct{}{}
	return 0, d.ctx.Err()
}

func (d *drip) Close() error { return nil }

// TestDripHoldsAtMostItsQuarter: a registry that announces 4 MiB manifests
// by tag, names no digest and drips 128 KiB of each holds at most a quarter
// of the budget: of six such tags asked at once, two are read (holding
// 256 KiB of 1 MiB) and four are answered 503 at once, without waiting;
// meanwhile another registry's manifest and listing are read and served.
// Once the dripping reads give up, nothing stays claimed.
func TestDripHoldsAtMostItsQuarter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const budget, sent = 16 * readStep, 2 * readStep // a quarter: 4 steps
		fake := origintest.New()
		manifest := randomBytes(t, 3*readStep)
		fake.Tag("v1", fake.Add(manifest, manifestType))
		fake.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: []byte(`{"name":"app","tags":["v1"]}`), MediaType: "application/json"})
		good := origintest.NoDigest(fake)
		ended := make(chan struct{}, 6)
		c := newTestCache(t, OriginFunc(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
			if req.Registry != "drip.example" {
				return good.Fetch(ctx, req)
			}
			resp := &oci.Response{MediaType: manifestType, Size: oci.MaxManifestSize, End: oci.MaxManifestSize}
			if req.Method == http.MethodGet {
				resp.Body = &drip{ctx: ctx, left: sent, ended: ended}
			}
			return resp, nil
		}), func(cfg *Config) { cfg.ReadMemory = budget })

		type answer struct {
			err    error
			waited time.Duration
		}
		answers := make(chan answer, 6)
		start := time.Now()
		for i := range 6 {
			// Stops when its request is answered: at once, or at the
			// answer timeout.
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				req := &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Registry: "drip.example",
					Repository: "app", Reference: oci.Reference{Tag: "t" + itoa(i)}}
				obj, err := c.Get(ctx, req)
				if err == nil {
					obj.Close()
				}
				answers <- answer{err, time.Since(start)}
			}()
			synctest.Wait() // its read holds what it could claim, or it was answered
		}
		if n := len(answers); n != 4 {
			t.Errorf("%d of 6 dripping tags answered at once, want 4", n)
		}
		for range min(len(answers), 4) {
			a := <-answers
			if !isStatus(a.err, http.StatusServiceUnavailable) || a.waited != 0 {
				t.Errorf("a dripping tag past the quarter: %v after %s, want 503 at once", a.err, a.waited)
			}
		}
		if held := c.reads.inUseBy("drip.example"); held != budget/4 {
			t.Errorf("drip.example holds %d bytes of read memory, want its quarter, %d", held, budget/4)
		}
		if n := refusedReads(c.reads, "manifest"); n != 4 {
			t.Errorf("%d manifest reads refused, want 4", n)
		}

		// Another registry reads meanwhile.
		req := &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Registry: "good.example", Repository: "app",
			Reference: oci.Reference{Tag: "v1"}}
		obj, err := c.Get(t.Context(), req)
		if err != nil {
			t.Fatalf("another registry's tag: %v", err)
		}
		if data, err := readAllIfBody(obj); err != nil || !bytes.Equal(data, manifest) {
			t.Errorf("another registry's tag: %d bytes, %v", len(data), err)
		}
		l, err := c.List(t.Context(), &oci.Request{Method: http.MethodGet, Kind: oci.KindTags, Registry: "good.example", Repository: "app"})
		if err != nil || string(l.Body) != `{"name":"app","tags":["v1"]}` {
			t.Errorf("another registry's tag list: %v", err)
		}
		// The drip's quarter and the other manifest's 3 steps at once.
		if peak := c.reads.highWater(); peak != budget/4+3*readStep {
			t.Errorf("read memory high water %d, want %d", peak, budget/4+3*readStep)
		}

		// The two dripping reads outlive their clients (answered at the
		// answer timeout) and end at the lookup's own timeout.
		for range 2 {
			if a := <-answers; !errors.Is(a.err, oci.ErrUpstreamTimeout) {
				t.Errorf("a dripping tag within the quarter: %v, want an upstream timeout", a.err)
			}
		}
		<-ended
		<-ended
		synctest.Wait()
		if held := c.reads.inUseBy(""); held != 0 || testutil.ToFloat64(c.m.ReadMemoryBytes) != 0 {
			t.Errorf("%d bytes of read memory held once every read ended (gauge %v), want 0",
				held, testutil.ToFloat64(c.m.ReadMemoryBytes))
		}
	})
}

// TestDigestlessTagPassThroughStreams: a tag that only the client's
// credentials get, and whose registry names no digest, is fetched for each
// request with its credentials and streamed to it, never read whole nor
// kept.
func TestDigestlessTagPassThroughStreams(t *testing.T) {
	o := origintest.New()
	manifest := randomBytes(t, 3*readStep)
	o.Tag("v1", o.Add(manifest, manifestType))
	c := newTestCache(t, origintest.NoDigest(origintest.Private(o, "Bearer client")), nil)
	for i := range 2 {
		req := tagReq(http.MethodGet, "v1")
		req.Authorization = "Bearer client"
		obj := mustGet(t, c, req)
		if obj.Source != SourcePassThrough || obj.Bytes() != nil {
			t.Errorf("request %d: source %s, read whole %t; want a pass-through stream", i, obj.Source, obj.Bytes() != nil)
		}
		if data, err := readAllIfBody(obj); err != nil || !bytes.Equal(data, manifest) {
			t.Errorf("request %d: %d bytes, %v", i, len(data), err)
		}
	}
	if n := o.Count(http.MethodGet, oci.KindManifest, "v1"); n != 4 {
		t.Errorf("%d upstream GETs, want 4: each request's as cacheyd (refused) and with its credentials", n)
	}
	if peak := c.reads.highWater(); peak != 0 {
		t.Errorf("read memory high water %d, want 0: nothing read whole", peak)
	}
	if held(c, oci.FromBytes(manifest)) {
		t.Error("a manifest only the client's credentials got was kept")
	}
}

// TestPassThroughListingWithinTheBound: a listing read with a client's
// credentials, for that request alone, is read within the budget and holds
// its copy until the caller releases it; one larger than its registry's
// quarter, or than what the quarter has left, is answered 503.
func TestPassThroughListingWithinTheBound(t *testing.T) {
	const small, large = 100 << 10, 300 << 10
	o := origintest.New()
	smallQ, largeQ := oci.ListQuery{N: "1"}, oci.ListQuery{N: "2"}
	o.AddListing(oci.KindTags, "", smallQ, origintest.Listing{Body: bytes.Repeat([]byte("s"), small), MediaType: "application/json"})
	o.AddListing(oci.KindTags, "", largeQ, origintest.Listing{Body: bytes.Repeat([]byte("l"), large), MediaType: "application/json"})
	c := newTestCache(t, origintest.Private(o, "Bearer alice"), func(cfg *Config) { cfg.ReadMemory = 16 * readStep }) // a quarter: 256 KiB
	list := func(q oci.ListQuery) (*Listing, error) {
		req := tagsReq(http.MethodGet, q)
		req.Authorization = "Bearer alice"
		return c.List(t.Context(), req)
	}
	l, err := list(smallQ)
	if err != nil || l.Source != SourcePassThrough || len(l.Body) != small {
		t.Fatalf("the small listing: %v", err)
	}
	// Read in 2 steps, then copied whole: the copy is what it holds.
	if held, peak := c.reads.inUseBy("docker.io"), c.reads.highWater(); held != small || peak != 2*readStep+small {
		t.Errorf("holding %d (high water %d), want %d (%d)", held, peak, small, 2*readStep+small)
	}
	if _, err := list(largeQ); !isStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("the large listing beside the small one: %v, want 503", err)
	}
	l.Release()
	l.Release()
	if held := c.reads.inUseBy(""); held != 0 {
		t.Errorf("holding %d once released, want 0", held)
	}
	if _, err := list(largeQ); !isStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("the large listing alone: %v, want 503 (larger than the quarter)", err)
	}
	if n, held := refusedReads(c.reads, "tags"), c.reads.inUseBy(""); n != 2 || held != 0 {
		t.Errorf("%d tag list reads refused, %d bytes held after; want 2 and 0", n, held)
	}
	if n := listingCount(c, "tags", "passthrough"); n != 1 {
		t.Errorf("%d pass-through listings served, want 1", n)
	}
}

// TestCopyIntoMemorySkippedWhenFull: while the registry's quarter of the
// budget is held, a fill of an object small enough for the memory tier is
// committed and served but not copied into memory, and a disk hit of it is
// served from its file rather than copied; once there is room again, it
// is copied on its next hit.
func TestCopyIntoMemorySkippedWhenFull(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 4<<10)
	dg := o.Add(data, "")
	c := newTestCache(t, o, nil)
	full := c.reads.claim("docker.io")
	if err := full.grow(c.reads.perRegistry, "manifest"); err != nil {
		t.Fatal(err)
	}
	inMemory := func() bool { _, _, ok := c.mem.Get(dg); return ok }
	for i, want := range []Source{SourceFillNew, SourceDisk} {
		obj := mustGet(t, c, blobReq(dg))
		if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) || obj.Source != want {
			t.Fatalf("request %d: %s, %d bytes, %v; want %s", i, obj.Source, len(got), err, want)
		}
		if !held(c, dg) || inMemory() {
			t.Errorf("request %d: on disk %t, in memory %t; want on disk only", i, held(c, dg), inMemory())
		}
	}
	if n := refusedReads(c.reads, "memory"); n != 2 {
		t.Errorf("%d copies into memory skipped, want 2 (the fill's, the disk hit's)", n)
	}
	full.release()
	if obj := mustGet(t, c, blobReq(dg)); obj.Source != SourceDisk || !bytes.Equal(obj.Bytes(), data) || !inMemory() {
		t.Errorf("with room again: %s, copied %t, in memory %t; want a disk hit copied into memory",
			obj.Source, obj.Bytes() != nil, inMemory())
	}
	if held, peak := c.reads.inUseBy(""), c.reads.highWater(); held != 0 || peak != c.reads.perRegistry {
		t.Errorf("%d bytes held after, high water %d; want 0 and the quarter held, %d", held, peak, c.reads.perRegistry)
	}
}
