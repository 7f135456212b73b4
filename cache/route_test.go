package cache

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// routed is an origin that routes a peer's request to itself ("") and a
// client's to another replica ("b"), as a replica that is not a key's
// owner does, and records the Route its GETs carry.
type routed struct {
	Origin
	mu     sync.Mutex // guards routes
	routes []string
}

func (r *routed) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Method == http.MethodGet {
		r.mu.Lock()
		r.routes = append(r.routes, req.Route)
		r.mu.Unlock()
	}
	return r.Origin.Fetch(ctx, req)
}

func (r *routed) Route(req *oci.Request) Route {
	if req.FromPeer {
		return keyed{r, ""}
	}
	return keyed{r, "b"}
}

// keyed is a route of routed's: its requests go to routed, under key.
type keyed struct {
	Origin
	key string
}

func (k keyed) Key() string { return k.key }

// TestFillsAreSharedOnlyOnOneRoute: requests that the origin routes to
// different places start a fill each, requests routed alike share one. A
// peer's request never joins a fill that waits for a peer.
func TestFillsAreSharedOnlyOnOneRoute(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 256<<10)
	dg := o.Add(data, "")
	gate := make(chan struct{})
	r := &routed{Origin: origintest.Gate(o, gate)}
	c := newTestCache(t, r, nil)

	peer := blobReq(dg)
	peer.FromPeer = true
	var objs []*Object
	// Each Get returns with its fill still in flight: the gate holds the
	// second half of every body.
	for _, req := range []*oci.Request{blobReq(dg), blobReq(dg), peer, peer} {
		obj, err := c.Get(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, obj)
	}
	close(gate)
	var sources []Source
	for _, obj := range objs {
		got, err := readAll(t, obj)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes, err %v; want the %d bytes", len(got), err, len(data))
		}
		sources = append(sources, obj.Source)
	}
	want := []Source{SourceFillNew, SourceFillJoined, SourceFillNew, SourceFillJoined}
	for i := range want {
		if sources[i] != want[i] {
			t.Fatalf("sources = %v, want %v", sources, want)
		}
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
		t.Errorf("origin GETs = %d, want 2 (one per route)", n)
	}
	// Each fill tells the origin the route it was keyed by.
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.routes) != 2 || r.routes[0] != "b" || r.routes[1] != "" {
		t.Errorf("routes the fills' requests carried = %q, want [b \"\"]", r.routes)
	}
}

// TestTagLookupsAreSharedOnlyOnOneRoute: a peer's lookup of a tag does not
// wait for a client's lookup of it that went to another replica.
func TestTagLookupsAreSharedOnlyOnOneRoute(t *testing.T) {
	o := origintest.New()
	dg := o.Add([]byte(`{"schemaVersion":2}`), oci.ManifestMediaTypes[1])
	o.Tag("v1", dg)
	arrived := make(chan bool, 2) // FromPeer of each HEAD that reached the origin
	release := make(chan struct{})
	held := origintest.Func(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
		if req.Method == http.MethodHead {
			arrived <- req.FromPeer
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return o.Fetch(ctx, req)
	})
	c := newTestCache(t, &routed{Origin: held}, nil)
	tagReq := func(fromPeer bool) *oci.Request {
		return &oci.Request{Method: http.MethodHead, Kind: oci.KindManifest, Registry: "docker.io",
			Repository: "library/app", Reference: oci.Reference{Tag: "v1"}, FromPeer: fromPeer}
	}
	var wg sync.WaitGroup
	for _, fromPeer := range []bool{false, true} {
		wg.Go(func() {
			obj, err := c.Get(t.Context(), tagReq(fromPeer))
			if err != nil {
				t.Error(err)
				return
			}
			if obj.Digest != dg {
				t.Errorf("tag resolved to %s, want %s", obj.Digest, dg)
			}
		})
	}
	// Both lookups reach the origin while the first is still held; a
	// shared lookup would leave the second waiting here.
	seen := map[bool]int{}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for range 2 {
		select {
		case fromPeer := <-arrived:
			seen[fromPeer]++
		case <-timeout.C:
			t.Fatalf("lookups that reached the origin: %v, want one client's and one peer's", seen)
		}
	}
	close(release)
	wg.Wait()
	if seen[false] != 1 || seen[true] != 1 {
		t.Errorf("lookups that reached the origin: %v, want one client's and one peer's (FromPeer kept)", seen)
	}
}

// counting is an origin that routes every request to "b" and counts the
// routes it decides (byTag: of those, the routes of requests by tag), the
// requests that went through them and the requests asked of it on their
// own.
type counting struct {
	Origin
	mu                           sync.Mutex // guards the counts
	routes, byTag, routed, alone int
}

func (c *counting) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	c.mu.Lock()
	c.alone++
	c.mu.Unlock()
	return c.Origin.Fetch(ctx, req)
}

func (c *counting) Route(req *oci.Request) Route {
	c.mu.Lock()
	c.routes++
	if !req.Reference.IsDigest() {
		c.byTag++
	}
	c.mu.Unlock()
	return keyed{OriginFunc(func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
		c.mu.Lock()
		c.routed++
		c.mu.Unlock()
		return c.Origin.Fetch(ctx, req)
	}), "b"}
}

// TestAFillDecidesItsRouteOnce: a parallel fill of a large blob asks the
// origin for its route once, when it is keyed, and every request it makes
// (the first, then each chunk, and the rescues of stranded readers) goes
// through that route; none is asked on its own.
func TestAFillDecidesItsRouteOnce(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 1<<20)
	dg := o.Add(data, "")
	r := &counting{Origin: o}
	m := metrics.New(nil)
	c := newTestCache(t, r, func(cfg *Config) {
		cfg.FillChunk, cfg.FillParallel, cfg.Metrics = 64<<10, 4, m
	})
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, err %v; want the %d bytes", len(got), err, len(data))
	}
	rescues := int(testutil.ToFloat64(m.FillRescues))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.routes != 1 || r.alone != 0 {
		t.Errorf("routes decided %d, requests on their own %d; want one route, none on their own", r.routes, r.alone)
	}
	// 16 chunks of 64 KiB, the first among them.
	if want := 16 + rescues; r.routed != want {
		t.Errorf("requests through the route = %d, want %d (16 chunks, %d rescues)", r.routed, want, rescues)
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != r.routed {
		t.Errorf("origin GETs = %d, want the %d that went through the route", n, r.routed)
	}
}

// TestATagLookupDecidesItsRouteOnce: a GET of a tag whose registry names no
// digest on HEAD asks the origin for the tag's route once, and every
// request of the lookup (the HEAD, its retry, the GET of the tag, and each
// one again with the client's credentials when the registry refuses
// cacheyd) goes through that route; none is asked on its own.
func TestATagLookupDecidesItsRouteOnce(t *testing.T) {
	unavailable := &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "busy", Upstream: true}
	for _, tt := range []struct {
		name string
		// origin is the registry as the test wants it, over the fake.
		origin func(o *origintest.Origin) Origin
		auth   string // the client's Authorization
		// The requests through the route, and the fake's HEADs and GETs
		// of the tag.
		routed, heads, gets int
	}{
		{"as cacheyd", func(o *origintest.Origin) Origin { return origintest.NoDigest(o) }, "", 2, 1, 1},
		{"a HEAD retried", func(o *origintest.Origin) Origin {
			return origintest.NoDigest(origintest.Fail(o, unavailable).Only(http.MethodHead).Times(1))
		}, "", 3, 2, 1},
		{"with the client's credentials", func(o *origintest.Origin) Origin {
			return origintest.NoDigest(origintest.Private(o, "Bearer client"))
		}, "Bearer client", 4, 2, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := origintest.New()
			manifest := []byte(`{"schemaVersion":2}`)
			o.Tag("v1", o.Add(manifest, manifestType))
			r := &counting{Origin: tt.origin(o)}
			c := newTestCache(t, r, func(cfg *Config) { cfg.RetryBackoff = time.Millisecond })
			req := tagReq(http.MethodGet, "v1")
			req.Authorization = tt.auth
			obj := mustGet(t, c, req)
			if got, err := readAllIfBody(obj); err != nil || !bytes.Equal(got, manifest) {
				t.Fatalf("got %q, err %v; want the manifest", got, err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.byTag != 1 || r.alone != 0 {
				t.Errorf("routes decided for the tag %d, requests on their own %d; want one route, none on their own", r.byTag, r.alone)
			}
			if r.routed != tt.routed {
				t.Errorf("requests through the route = %d, want %d", r.routed, tt.routed)
			}
			heads, gets := o.Count(http.MethodHead, oci.KindManifest, "v1"), o.Count(http.MethodGet, oci.KindManifest, "v1")
			if heads != tt.heads || gets != tt.gets {
				t.Errorf("the registry's HEADs and GETs of the tag = %d, %d; want %d, %d", heads, gets, tt.heads, tt.gets)
			}
		})
	}
}
