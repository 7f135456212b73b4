package cache

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

func tagReq(method, tag string) *oci.Request {
	return &oci.Request{Method: method, Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Tag: tag}}
}

// TestTagFreshnessAndStaleIfError walks one tag through its life: resolved
// with a HEAD, answered from the table within the TTL, revalidated after it,
// moved upstream, and served stale while upstream is down, until TagStaleMax.
func TestTagFreshnessAndStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		mt := "application/vnd.oci.image.manifest.v1+json"
		v1 := o.Add([]byte(`{"schemaVersion":2,"n":1}`), mt)
		v2 := o.Add([]byte(`{"schemaVersion":2,"n":2}`), mt)
		o.Tag("latest", v1)
		down := origintest.Fail(o, oci.ErrUpstreamUnavailable).Off()
		cfg := Config{Dir: t.TempDir(), TagTTL: time.Minute, TagStaleMax: time.Hour, Logger: quietLogger()}
		c, err := New(cfg, down, newTestTiers(t, &cfg))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		heads := func() int { return o.Count(http.MethodHead, oci.KindManifest, "latest") }
		resolve := func(method string) *Object {
			t.Helper()
			obj, err := c.Get(t.Context(), tagReq(method, "latest"))
			if err != nil {
				t.Fatalf("%s latest: %v", method, err)
			}
			if _, err := readAllIfBody(obj); err != nil {
				t.Fatal(err)
			}
			return obj
		}

		if obj := resolve(http.MethodGet); obj.Digest != v1 || obj.MediaType != mt || heads() != 1 {
			t.Fatalf("first GET: digest %s type %q, HEADs %d", obj.Digest.Short(), obj.MediaType, heads())
		}
		if n := o.Count(http.MethodGet, oci.KindManifest, "latest"); n != 0 {
			t.Errorf("manifest GETs by tag = %d, want 0", n)
		}
		time.Sleep(30 * time.Second) // virtual time: within the TTL
		if obj := resolve(http.MethodHead); obj.Digest != v1 || heads() != 1 {
			t.Fatalf("within TTL: digest %s, HEADs %d, want v1 and 1", obj.Digest.Short(), heads())
		}
		o.Tag("latest", v2)
		time.Sleep(31 * time.Second) // past the TTL: revalidated
		if obj := resolve(http.MethodGet); obj.Digest != v2 || heads() != 2 {
			t.Fatalf("after TTL: digest %s, HEADs %d, want v2 and 2", obj.Digest.Short(), heads())
		}
		if n := o.Count(http.MethodGet, oci.KindManifest, string(v2)); n != 1 {
			t.Errorf("a changed tag cost %d GETs by digest, want 1", n)
		}

		down.Always()
		time.Sleep(10 * time.Minute) // past the TTL, upstream down: stale
		if obj := resolve(http.MethodGet); obj.Digest != v2 {
			t.Fatalf("stale: digest %s, want v2", obj.Digest.Short())
		}
		if n := testutil.ToFloat64(c.m.TagLookups.WithLabelValues("stale")); n != 1 {
			t.Errorf("stale tag lookups counted %v, want 1", n)
		}
		time.Sleep(time.Hour) // past TagStaleMax: the error is the answer
		if _, err := c.Get(t.Context(), tagReq(http.MethodGet, "latest")); err == nil {
			t.Fatal("past TagStaleMax a failing upstream still answered")
		}
	})
}

// TestTagNotFoundIsNotStale: a 404 is a real answer, not an outage.
func TestTagNotFoundIsNotStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		v1 := o.Add([]byte(`{"schemaVersion":2}`), "application/vnd.oci.image.manifest.v1+json")
		o.Tag("gone", v1)
		cfg := Config{Dir: t.TempDir(), Logger: quietLogger()}
		c, err := New(cfg, o, newTestTiers(t, &cfg))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if obj, err := c.Get(t.Context(), tagReq(http.MethodHead, "gone")); err != nil || obj.Digest != v1 {
			t.Fatalf("first: %v", err)
		}
		o.Remove("gone", v1)
		time.Sleep(time.Second)
		_, err = c.Get(t.Context(), tagReq(http.MethodHead, "gone"))
		if e, ok := oci.AsError(err); !ok || e.Status != http.StatusNotFound {
			t.Fatalf("deleted tag: %v, want 404", err)
		}
	})
}

func readAllIfBody(obj *Object) ([]byte, error) {
	if !obj.HasBody() {
		return nil, nil
	}
	r, err := obj.Body(0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestManifestRespectsAccept: a client that does not accept the media type
// cacheyd holds is answered by upstream with its own Accept list, uncached,
// and clients that do accept it are still served from the cache.
func TestManifestRespectsAccept(t *testing.T) {
	o := origintest.New()
	index := "application/vnd.oci.image.index.v1+json"
	dg := o.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), index)
	o.Tag("v1", dg)
	c := newTestCache(t, o, nil)
	req := tagReq(http.MethodGet, "v1")
	req.Accept = []string{index, "application/vnd.oci.image.manifest.v1+json"}
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAllIfBody(obj); err != nil || obj.MediaType != index {
		t.Fatalf("accepting client: %v, type %q", err, obj.MediaType)
	}
	c.wg.Wait()
	memOf(c).Wait()

	old := tagReq(http.MethodGet, "v1")
	old.Accept = []string{"application/vnd.docker.distribution.manifest.v2+json"}
	obj, err = c.Get(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	readAllIfBody(obj)
	if obj.Source != SourceUpstream {
		t.Errorf("client not accepting the index: source %v, want upstream", obj.Source)
	}
	if n := o.Count(http.MethodGet, oci.KindManifest, "v1"); n != 1 {
		t.Errorf("upstream GETs by tag with the client's Accept = %d, want 1", n)
	}
	byDigest := &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/app",
		Reference: oci.Reference{Digest: dg}, Accept: []string{"*/*"}}
	obj, err = c.Get(t.Context(), byDigest)
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	if obj.Source != SourceMemory {
		t.Errorf("*/* client by digest: source %v, want memory", obj.Source)
	}
}

// TestFirstTagLookupRetries: a tag never seen before, whose upstream HEAD
// answers 503 and then 429, is retried within the budget instead of failing
// the request; with a last answer known, a failure serves it stale at once.
func TestFirstTagLookupRetries(t *testing.T) {
	o := origintest.New()
	dg := o.Add([]byte(`{"schemaVersion":2}`), "application/vnd.oci.image.manifest.v1+json")
	o.Tag("v1", dg)
	failing := origintest.Fail(o, &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable}).Only(http.MethodHead).Times(2)
	c := newTestCache(t, failing, func(cfg *Config) { cfg.RetryBackoff = time.Millisecond; cfg.FillRetries = 3 })
	obj, err := c.Get(t.Context(), tagReq(http.MethodHead, "v1"))
	if err != nil || obj.Digest != dg {
		t.Fatalf("first lookup through two 503s: %v", err)
	}
	if n := o.Count(http.MethodHead, oci.KindManifest, "v1"); n != 3 {
		t.Errorf("upstream HEADs = %d, want 3 (two failures, one answer)", n)
	}
	// Known now: the next failure is not retried, the last answer is served.
	failing.Times(5)
	obj, err = c.Get(t.Context(), tagReq(http.MethodHead, "v1"))
	if err != nil || obj.Digest != dg {
		t.Fatalf("stale after a failure: %v", err)
	}
	if n := o.Count(http.MethodHead, oci.KindManifest, "v1"); n != 4 {
		t.Errorf("upstream HEADs = %d, want 4 (one try, then stale)", n)
	}
}

// peerAnswers marks every answer of its origin as a peer's.
type peerAnswers struct{ Origin }

func (p peerAnswers) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	resp, err := p.Origin.Fetch(ctx, req)
	if resp != nil {
		resp.Peer = true
	}
	return resp, err
}

// TestPeersTagAnswerOnlyForTheTTL: a tag answer another replica gave is
// used for the TTL, but never served stale once asking fails: a replica's
// word is its own to stand by, not this one's.
func TestPeersTagAnswerOnlyForTheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		v1 := o.Add([]byte(`{"schemaVersion":2}`), "application/vnd.oci.image.manifest.v1+json")
		o.Tag("latest", v1)
		down := origintest.Fail(o, oci.ErrUpstreamUnavailable).Off()
		c := newTestCache(t, peerAnswers{down}, func(cfg *Config) { cfg.TagTTL, cfg.TagStaleMax = time.Minute, time.Hour })
		if _, err := c.Get(t.Context(), tagReq(http.MethodHead, "latest")); err != nil {
			t.Fatal(err)
		}
		down.Always()
		if obj, err := c.Get(t.Context(), tagReq(http.MethodHead, "latest")); err != nil || obj.Digest != v1 {
			t.Fatalf("within the TTL: %v", err)
		}
		time.Sleep(2 * time.Minute) // virtual time: past the TTL
		if obj, err := c.Get(t.Context(), tagReq(http.MethodHead, "latest")); err == nil {
			t.Fatalf("a peer's tag answer was served stale (%s)", obj.Digest.Short())
		}
	})
}

// cachedMarks is an origin that routes every piece of work to itself and
// records, for each tag's lookup routed, whether it was marked Cached and
// the credentials it was planned with; it fails a request that asks with
// them.
type cachedMarks struct {
	Origin
	mu    sync.Mutex // guards marks and auths
	marks []bool
	auths []string
}

func (o *cachedMarks) Route(req *oci.Request) Route {
	if req.Kind == oci.KindManifest && !req.Reference.IsDigest() {
		o.mu.Lock()
		o.marks = append(o.marks, req.Cached)
		o.auths = append(o.auths, req.Authorization)
		o.mu.Unlock()
	}
	return keyed{o, ""}
}

func (o *cachedMarks) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Authorization != "" {
		return nil, &oci.Error{Status: http.StatusBadRequest, Message: "asked with a client's credentials"}
	}
	return o.Origin.Fetch(ctx, req)
}

func (o *cachedMarks) last(t *testing.T, lookups int) bool {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.marks) != lookups {
		t.Fatalf("%d tag lookups routed, want %d", len(o.marks), lookups)
	}
	return o.marks[len(o.marks)-1]
}

// TestALookupSaysWhatIsCached: a tag's lookup tells its route whether the
// cache holds an answer it would serve stale (oci.Request.Cached): none at
// first, one past the TTL, none past TagStaleMax, and none from a peer,
// whose answer is never served stale. A lookup for a request with a
// client's credentials is planned as such a request is, and asks as
// cacheyd.
func TestALookupSaysWhatIsCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		v1 := o.Add([]byte(`{"schemaVersion":2}`), "application/vnd.oci.image.manifest.v1+json")
		o.Tag("latest", v1)
		for _, peer := range []bool{false, true} {
			marks := &cachedMarks{Origin: o}
			if peer {
				marks.Origin = peerAnswers{o}
			}
			c := newTestCache(t, marks, func(cfg *Config) { cfg.TagTTL, cfg.TagStaleMax = time.Minute, time.Hour })
			head := func() {
				t.Helper()
				if _, err := c.Get(t.Context(), tagReq(http.MethodHead, "latest")); err != nil {
					t.Fatal(err)
				}
			}
			head()
			if marks.last(t, 1) {
				t.Error("the first lookup was marked Cached")
			}
			time.Sleep(2 * time.Minute) // virtual time: past the TTL
			head()
			if got := marks.last(t, 2); got == peer {
				t.Errorf("past the TTL, peer's answer %v: marked Cached %v, want %v", peer, got, !peer)
			}
			time.Sleep(2 * time.Hour) // past TagStaleMax
			head()
			if marks.last(t, 3) {
				t.Errorf("past TagStaleMax, peer's answer %v: marked Cached", peer)
			}
			// A request with a client's credentials: its lookup asks as
			// cacheyd, on a route planned as for the credentials.
			time.Sleep(2 * time.Minute)
			req := tagReq(http.MethodHead, "latest")
			req.Authorization = "Bearer client"
			if _, err := c.Get(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			marks.last(t, 4)
			if got := marks.auths[3]; got != req.Authorization {
				t.Errorf("a lookup with a client's credentials was planned with %q, want them", got)
			}
		}
	})
}
