package cache

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

func tagsReq(method string, q oci.ListQuery) *oci.Request {
	return &oci.Request{Method: method, Kind: oci.KindTags, Registry: "docker.io", Repository: "library/app", List: q}
}

func referrersReq(dg oci.Digest, q oci.ListQuery) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: oci.KindReferrers, Registry: "docker.io", Repository: "library/app",
		Reference: oci.Reference{Digest: dg}, List: q}
}

func listingCount(c *Cache, kind, outcome string) int {
	return int(testutil.ToFloat64(c.m.Listings.WithLabelValues(kind, outcome)))
}

// TestListingFreshnessAndStaleIfError walks a tag list through its life as
// a tag's answer goes: fetched, answered from the table within the TTL,
// fetched again after it, served stale while upstream is down until
// TagStaleMax, and a registry's real answer (404) passed on, never covered
// by the stale one.
func TestListingFreshnessAndStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		q := oci.ListQuery{N: "2"}
		page := func(body string) origintest.Listing {
			return origintest.Listing{Body: []byte(body), MediaType: "application/json",
				Link: `</v2/library/app/tags/list?last=b&n=2>; rel="next"`}
		}
		o.AddListing(oci.KindTags, "", q, page(`{"name":"library/app","tags":["a","b"]}`))
		down := origintest.Fail(o, errors.Join(errors.New("down"), oci.ErrUpstreamUnavailable)).Off()
		gone := origintest.Fail(down, &oci.Error{Status: http.StatusNotFound, Code: oci.CodeNameUnknown, Message: "gone"}).Off()
		c := newTestCache(t, gone, func(cfg *Config) { cfg.TagTTL, cfg.TagStaleMax = time.Minute, time.Hour })
		gets := func() int { return o.Count(http.MethodGet, oci.KindTags, origintest.ListRef("", q)) }
		list := func(wantBody string, wantSource Source, wantGets int) {
			t.Helper()
			l, err := c.List(t.Context(), tagsReq(http.MethodGet, q))
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if string(l.Body) != wantBody || l.Source != wantSource || gets() != wantGets {
				t.Fatalf("List = %s from %s after %d GETs, want %s from %s after %d", l.Body, l.Source, gets(), wantBody, wantSource, wantGets)
			}
			if l.MediaType != "application/json" || l.Link != page("").Link {
				t.Errorf("headers: type %q, Link %q; want the origin's", l.MediaType, l.Link)
			}
		}
		list(`{"name":"library/app","tags":["a","b"]}`, SourceUpstream, 1)
		time.Sleep(30 * time.Second) // virtual time: within the TTL
		list(`{"name":"library/app","tags":["a","b"]}`, SourceListings, 1)
		o.AddListing(oci.KindTags, "", q, page(`{"name":"library/app","tags":["a","c"]}`))
		time.Sleep(31 * time.Second) // past the TTL
		list(`{"name":"library/app","tags":["a","c"]}`, SourceUpstream, 2)

		down.Always()
		time.Sleep(time.Minute + time.Second)
		list(`{"name":"library/app","tags":["a","c"]}`, SourceListings, 3)
		time.Sleep(time.Hour) // past TagStaleMax
		if _, err := c.List(t.Context(), tagsReq(http.MethodGet, q)); !errors.Is(err, oci.ErrUpstreamUnavailable) {
			t.Fatalf("past TagStaleMax: %v, want upstream unavailable", err)
		}

		// A 404 is the registry's answer: passed on, though a stale answer
		// is at hand.
		gone.Always()
		if _, err := c.List(t.Context(), tagsReq(http.MethodGet, q)); !isStatus(err, http.StatusNotFound) {
			t.Fatalf("a 404 upstream: %v, want it passed on", err)
		}
		for outcome, want := range map[string]int{"revalidated": 2, "fresh": 1, "stale": 1, "error": 2} {
			if n := listingCount(c, "tags", outcome); n != want {
				t.Errorf("listings{tags,%s} = %d, want %d", outcome, n, want)
			}
		}
	})
}

func isStatus(err error, status int) bool {
	e, ok := oci.AsError(err)
	return ok && e.Status == status
}

// TestListingsApart: every query is a listing of its own, and referrers of
// one digest are apart from another's; the origin's headers come along.
func TestListingsApart(t *testing.T) {
	o := origintest.New()
	dgA, dgB := oci.FromBytes([]byte("a")), oci.FromBytes([]byte("b"))
	idx := "application/vnd.oci.image.index.v1+json"
	filter := oci.ListQuery{ArtifactType: "application/vnd.example.sig"}
	o.AddListing(oci.KindTags, "", oci.ListQuery{N: "1"}, origintest.Listing{Body: []byte(`{"tags":["a"]}`)})
	o.AddListing(oci.KindTags, "", oci.ListQuery{N: "1", Last: "a"}, origintest.Listing{Body: []byte(`{"tags":["b"]}`)})
	o.AddListing(oci.KindReferrers, string(dgA), oci.ListQuery{}, origintest.Listing{Body: []byte(`{"manifests":["A"]}`), MediaType: idx})
	o.AddListing(oci.KindReferrers, string(dgA), filter, origintest.Listing{Body: []byte(`{"manifests":["A sig"]}`), MediaType: idx, FiltersApplied: "artifactType"})
	o.AddListing(oci.KindReferrers, string(dgB), oci.ListQuery{}, origintest.Listing{Body: []byte(`{"manifests":["B"]}`), MediaType: idx})
	c := newTestCache(t, o, func(cfg *Config) { cfg.TagTTL = time.Hour })
	for range 2 {
		for _, tt := range []struct {
			req           *oci.Request
			body, filters string
		}{
			{tagsReq(http.MethodGet, oci.ListQuery{N: "1"}), `{"tags":["a"]}`, ""},
			{tagsReq(http.MethodGet, oci.ListQuery{N: "1", Last: "a"}), `{"tags":["b"]}`, ""},
			{referrersReq(dgA, oci.ListQuery{}), `{"manifests":["A"]}`, ""},
			{referrersReq(dgA, filter), `{"manifests":["A sig"]}`, "artifactType"},
			{referrersReq(dgB, oci.ListQuery{}), `{"manifests":["B"]}`, ""},
		} {
			l, err := c.List(t.Context(), tt.req)
			if err != nil || string(l.Body) != tt.body || l.FiltersApplied != tt.filters {
				t.Fatalf("List %v %s %+v = %+v, %v; want %s, filters %q", tt.req.Kind, tt.req.Reference.Digest.Short(), tt.req.List, l, err, tt.body, tt.filters)
			}
		}
	}
	// Once each, for two rounds.
	for _, n := range []int{
		o.Count("GET", oci.KindTags, origintest.ListRef("", oci.ListQuery{N: "1"})),
		o.Count("GET", oci.KindTags, origintest.ListRef("", oci.ListQuery{N: "1", Last: "a"})),
		o.Count("GET", oci.KindReferrers, origintest.ListRef(string(dgA), oci.ListQuery{})),
		o.Count("GET", oci.KindReferrers, origintest.ListRef(string(dgA), filter)),
		o.Count("GET", oci.KindReferrers, origintest.ListRef(string(dgB), oci.ListQuery{})),
	} {
		if n != 1 {
			t.Errorf("origin asked %d times for a listing, want 1", n)
		}
	}
}

// TestListingSharedAndHead: concurrent requests for one listing share one
// upstream GET, HEADs included (a listing is fetched whole, never HEAD).
func TestListingSharedAndHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		body := `{"name":"library/app","tags":["` + strings.Repeat("x", 1000) + `"]}`
		o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: []byte(body), MediaType: "application/json"})
		gate := make(chan struct{})
		c := newTestCache(t, origintest.Gate(o, gate), func(cfg *Config) { cfg.TagTTL = time.Minute })
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			method := http.MethodGet
			if i%2 == 1 {
				method = http.MethodHead
			}
			wg.Go(func() {
				l, err := c.List(t.Context(), tagsReq(method, oci.ListQuery{}))
				if err == nil && string(l.Body) != body {
					err = errors.New("wrong body: " + string(l.Body))
				}
				errs <- err
			})
		}
		synctest.Wait() // one GET reading a held body, the others waiting for it
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		ref := origintest.ListRef("", oci.ListQuery{})
		if g, h := o.Count(http.MethodGet, oci.KindTags, ref), o.Count(http.MethodHead, oci.KindTags, ref); g != 1 || h != 0 {
			t.Errorf("origin got %d GETs and %d HEADs for %d requests, want 1 and 0", g, h, n)
		}
	})
}

// TestPrivateListing: a listing the origin gives only to a client's
// credentials goes to that request and is never kept, so no one else, with
// other credentials or none, gets it from the cache.
func TestPrivateListing(t *testing.T) {
	o := origintest.New()
	o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: []byte(`{"tags":["secret"]}`), MediaType: "application/json"})
	down := origintest.Fail(origintest.Private(o, "Bearer alice"), errors.Join(errors.New("down"), oci.ErrUpstreamUnavailable)).Off()
	c := newTestCache(t, down, func(cfg *Config) { cfg.TagTTL, cfg.TagStaleMax = time.Hour, time.Hour })
	ref := origintest.ListRef("", oci.ListQuery{})

	anon := tagsReq(http.MethodGet, oci.ListQuery{})
	if _, err := c.List(t.Context(), anon); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous: %v, want the origin's 401", err)
	}
	for i := range 2 {
		alice := tagsReq(http.MethodGet, oci.ListQuery{})
		alice.Authorization = "Bearer alice"
		l, err := c.List(t.Context(), alice)
		if err != nil || string(l.Body) != `{"tags":["secret"]}` || l.Source != SourcePassThrough {
			t.Fatalf("alice: %+v, %v; want the list, passed through", l, err)
		}
		// As cacheyd first (refused), then as alice: each time.
		if n := o.Count(http.MethodGet, oci.KindTags, ref); n != 1+2*(i+1) {
			t.Errorf("after alice's request %d the origin was asked %d times, want %d", i+1, n, 1+2*(i+1))
		}
	}
	for _, auth := range []string{"", "Bearer mallory"} {
		other := tagsReq(http.MethodGet, oci.ListQuery{})
		other.Authorization = auth
		if l, err := c.List(t.Context(), other); !isStatus(err, http.StatusUnauthorized) {
			t.Errorf("Authorization %q after alice: %+v, %v; want the origin's 401", auth, l, err)
		}
	}
	// Upstream down: nothing was kept, so nothing stale is served either.
	down.Always()
	if _, err := c.List(t.Context(), anon); !errors.Is(err, oci.ErrUpstreamUnavailable) {
		t.Errorf("upstream down after private listings: %v, want unavailable", err)
	}
}

// TestListingRetriedWhenNothingKept: without a last answer, a 503 is
// retried as a fill's would be; a 404 (no referrers API) is passed on at
// once, not retried, and kept for the TTL (absent.go).
func TestListingRetriedWhenNothingKept(t *testing.T) {
	o := origintest.New()
	o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: []byte(`{"tags":[]}`)})
	busy := origintest.Fail(o, &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "busy"}).Only(http.MethodGet).Times(1)
	c := newTestCache(t, busy, func(cfg *Config) { cfg.TagTTL, cfg.RetryBackoff = time.Hour, time.Millisecond })
	if _, err := c.List(t.Context(), tagsReq(http.MethodGet, oci.ListQuery{})); err != nil {
		t.Fatalf("after one 503: %v", err)
	}
	if n := o.Count(http.MethodGet, oci.KindTags, origintest.ListRef("", oci.ListQuery{})); n != 2 {
		t.Errorf("origin asked %d times, want 2", n)
	}
	dg := oci.FromBytes([]byte("subject"))
	for i := range 2 {
		if _, err := c.List(t.Context(), referrersReq(dg, oci.ListQuery{})); !isStatus(err, http.StatusNotFound) {
			t.Fatalf("referrers of a registry without the API: %v, want its 404", err)
		}
		if n := o.Count(http.MethodGet, oci.KindReferrers, origintest.ListRef(string(dg), oci.ListQuery{})); n != 1 {
			t.Errorf("referrers asked %d times after %d requests within the TTL, want 1: the 404 is kept", n, i+1)
		}
	}
}

// TestListingNotFoundKept: a registry's 404 to a listing (oras discover
// against a registry without the referrers API) is kept for the TTL as a
// listing is: two asks within it cost one upstream request; a request with
// credentials asks for itself; past the TTL it is asked again, and a
// listing that has appeared since is served.
func TestListingNotFoundKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := origintest.New()
		c := newTestCache(t, o, func(cfg *Config) { cfg.TagTTL = time.Minute })
		dg := oci.FromBytes([]byte("subject"))
		asked := func() int {
			return o.Count(http.MethodGet, oci.KindReferrers, origintest.ListRef(string(dg), oci.ListQuery{}))
		}
		ask := func(auth string, wantStatus, wantAsked int) {
			t.Helper()
			req := referrersReq(dg, oci.ListQuery{})
			req.Authorization = auth
			l, err := c.List(t.Context(), req)
			if wantStatus == http.StatusOK {
				if err != nil {
					t.Fatalf("List: %v, want the listing", err)
				}
				l.Release()
			} else if !isStatus(err, wantStatus) {
				t.Fatalf("List: %v, want %d", err, wantStatus)
			}
			if n := asked(); n != wantAsked {
				t.Fatalf("origin asked %d times, want %d", n, wantAsked)
			}
		}
		ask("", http.StatusNotFound, 1)
		time.Sleep(30 * time.Second) // virtual time: within the TTL
		ask("", http.StatusNotFound, 1)
		ask("Bearer alice", http.StatusNotFound, 2)
		if fresh, errs := listingCount(c, "referrers", "fresh"), listingCount(c, "referrers", "error"); fresh != 1 || errs != 2 {
			t.Errorf("listings{referrers}: fresh %d, error %d; want 1 and 2", fresh, errs)
		}
		o.AddListing(oci.KindReferrers, string(dg), oci.ListQuery{}, origintest.Listing{Body: []byte(`{"manifests":[]}`)})
		ask("", http.StatusNotFound, 2)
		time.Sleep(31 * time.Second) // past the TTL
		ask("", http.StatusOK, 3)
		ask("", http.StatusOK, 3)
	})
}

// TestListingTooLarge: an origin's listing over oci.MaxListingSize is
// refused (413), not kept.
func TestListingTooLarge(t *testing.T) {
	o := origintest.New()
	o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: make([]byte, oci.MaxListingSize+1)})
	c := newTestCache(t, o, nil)
	if _, err := c.List(t.Context(), tagsReq(http.MethodGet, oci.ListQuery{})); !isStatus(err, http.StatusRequestEntityTooLarge) {
		t.Fatalf("a listing over the bound: %v, want 413", err)
	}
}

func TestListingTableBounds(t *testing.T) {
	tb := newListingTable()
	body := make([]byte, maxListingBytes/4)
	for i := range 10 {
		tb.put(listKey{kind: oci.KindTags, repository: itoa(i)}, listEntry{listing: Listing{Body: body}})
		if tb.bytes > maxListingBytes || len(tb.m) > 4 {
			t.Fatalf("after %d puts: %d bytes in %d entries, over the bounds", i+1, tb.bytes, len(tb.m))
		}
	}
	if _, ok := tb.get(listKey{kind: oci.KindTags, repository: itoa(9)}); !ok {
		t.Error("the last listing put is not kept")
	}
	// Replacing an entry does not count it twice.
	tb.put(listKey{kind: oci.KindTags, repository: itoa(9)}, listEntry{listing: Listing{Body: body}})
	sum := 0
	for _, e := range tb.m {
		sum += len(e.listing.Body)
	}
	if sum != tb.bytes {
		t.Errorf("table counts %d bytes, holds %d", tb.bytes, sum)
	}
}
