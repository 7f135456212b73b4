package cache

import (
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

// ladderOrigin is the fake origin of the ladder's test: it counts what it
// is asked as cacheyd and as a client, holds requests as cacheyd until
// told, and fails or marks answers as a peer's on demand.
type ladderOrigin struct {
	*origintest.Origin
	next origintest.Fetcher // the fake, or the fake behind the test's faults

	mu        sync.Mutex    // guards everything below
	hold      chan struct{} // when set, requests as cacheyd wait for it to close
	fail      error         // when set, the answer to every request
	peer      bool          // marks every answer as a peer's
	asCacheyd int           // requests without Authorization
	asClient  int           // requests with it
}

func (o *ladderOrigin) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	if req.Authorization == "" {
		o.asCacheyd++
	} else {
		o.asClient++
	}
	hold, fail, peer := o.hold, o.fail, o.peer
	o.mu.Unlock()
	if hold != nil && req.Authorization == "" {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	if fail != nil {
		return nil, fail
	}
	resp, err := o.next.Fetch(ctx, req)
	if resp != nil && peer {
		resp.Peer = true
	}
	return resp, err
}

func (o *ladderOrigin) set(fn func(o *ladderOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fn(o)
}

func (o *ladderOrigin) asked() (asCacheyd, asClient int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.asCacheyd, o.asClient
}

// A ladderKind is a tag or a listing, as the ladder's test climbs it.
type ladderKind struct {
	// answer is what the origin answers the lookup with.
	answer string
	// climb climbs the kind's ladder once, with auth as the request's
	// Authorization, and names the answer it got.
	climb func(t *testing.T, c *Cache, auth string) (string, rung, error)
	// kept reports whether the kind's table holds an answer.
	kept func(c *Cache) bool
	// counted is how many lookups the kind's metric counted as r.
	counted func(c *Cache, r rung) int
}

// newLadderKind makes o answer a tag ("tag") or a tag list ("listing"),
// and returns how the test climbs it.
func newLadderKind(name string, o *origintest.Origin) ladderKind {
	if name == "tag" {
		dg := o.Add([]byte(`{"schemaVersion":2}`), "application/vnd.oci.image.manifest.v1+json")
		o.Tag("v1", dg)
		key := tagKeyOf(tagReq(http.MethodHead, "v1"))
		return ladderKind{
			answer: string(dg),
			climb: func(t *testing.T, c *Cache, auth string) (string, rung, error) {
				req := tagReq(http.MethodHead, "v1")
				req.Authorization = auth
				l := c.tagLadder()
				d, r, _, err := climb(t.Context(), c, &l, req, key)
				return string(d.digest), r, err
			},
			kept: func(c *Cache) bool { _, ok := c.tags.get(key); return ok },
			counted: func(c *Cache, r rung) int {
				return int(testutil.ToFloat64(c.m.TagLookups.WithLabelValues(string(r))))
			},
		}
	}
	const body = `{"name":"library/app","tags":["v1"]}`
	o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: []byte(body), MediaType: "application/json"})
	key := listKeyOf(tagsReq(http.MethodGet, oci.ListQuery{}))
	return ladderKind{
		answer: body,
		climb: func(t *testing.T, c *Cache, auth string) (string, rung, error) {
			req := tagsReq(http.MethodGet, oci.ListQuery{})
			req.Authorization = auth
			l := c.listingLadder()
			got, r, _, err := climb(t.Context(), c, &l, req, key)
			got.Release()
			return string(got.Body), r, err
		},
		kept:    func(c *Cache) bool { _, ok := c.listings.get(key); return ok },
		counted: func(c *Cache, r rung) int { return listingCount(c, "tags", string(r)) },
	}
}

// TestLadder climbs the ladder with a tag and with a listing, three
// requests at once, from each state it can be in: which rung answers each,
// how often the kind's metric counted that rung, what the origin was asked
// as cacheyd and as the client (the kept answer's one request included),
// and whether an answer is kept afterwards.
func TestLadder(t *testing.T) {
	const ttl, staleMax, n = time.Minute, time.Hour, 3
	down := errors.Join(errors.New("down"), oci.ErrUpstreamUnavailable)
	busy := &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "busy"}
	gone := &oci.Error{Status: http.StatusNotFound, Code: oci.CodeNameUnknown, Message: "gone"}
	for _, tt := range []struct {
		name string
		// age is how old the kept answer is when the requests come; none
		// is kept when it is negative.
		age     time.Duration
		peer    bool   // the kept answer is a peer's
		private string // the only Authorization the origin accepts, if any
		fail    error  // the origin's answer once the kept one is in
		auth    string // the requests' Authorization
		// wantTag and wantListing are the rungs that answer each kind.
		wantTag, wantListing rung
		// tagUncounted: a tag's failure with the client's credentials is
		// not counted, a listing's is.
		tagUncounted bool
		// tagCounted is the outcome a tag's failure is counted as, when
		// not its rung's: a 404 is notfound.
		tagCounted          rung
		asCacheyd, asClient int
		kept                bool
	}{
		{name: "fresh", age: ttl / 2,
			wantTag: rungFresh, wantListing: rungFresh, asCacheyd: 1, kept: true},
		{name: "shared, nothing kept", age: -1,
			wantTag: rungShared, wantListing: rungShared, asCacheyd: 1, kept: true},
		{name: "shared, kept past the TTL", age: ttl + time.Second,
			wantTag: rungShared, wantListing: rungShared, asCacheyd: 2, kept: true},
		{name: "as client, refused as cacheyd", age: -1, private: "Bearer alice", auth: "Bearer alice",
			wantTag: rungAsClient, wantListing: rungAsClient, asCacheyd: 1, asClient: n},
		{name: "stale, upstream unreachable", age: ttl + time.Second, fail: down,
			wantTag: rungStale, wantListing: rungStale, asCacheyd: 2, kept: true},
		{name: "stale, upstream 503", age: ttl + time.Second, fail: busy,
			wantTag: rungStale, wantListing: rungStale, asCacheyd: 2, kept: true},
		// A tag a peer gave is that peer's to serve stale; no peer gives
		// listings, so a listing so marked is served stale all the same.
		{name: "a peer's answer past the TTL", age: ttl + time.Second, peer: true, fail: down,
			wantTag: rungError, wantListing: rungStale, asCacheyd: 2, kept: true},
		{name: "error, unreachable and nothing kept", age: -1, fail: down,
			wantTag: rungError, wantListing: rungError, asCacheyd: 1},
		{name: "error, past TagStaleMax", age: ttl + staleMax + time.Second, fail: down,
			wantTag: rungError, wantListing: rungError, asCacheyd: 2, kept: true},
		{name: "error, a 404 is upstream's answer", age: ttl + time.Second, fail: gone,
			wantTag: rungError, wantListing: rungError, tagCounted: rungNotFound, asCacheyd: 2, kept: true},
		{name: "error, refused as the client too", age: -1, private: "Bearer alice", auth: "Bearer mallory",
			wantTag: rungError, wantListing: rungError, tagUncounted: true, asCacheyd: 1, asClient: n},
		{name: "error, refused without credentials", age: -1, private: "Bearer alice",
			wantTag: rungError, wantListing: rungError, asCacheyd: 1},
	} {
		for _, name := range []string{"tag", "listing"} {
			want, wantCounted := tt.wantListing, n
			counted := want
			if name == "tag" {
				want, counted = tt.wantTag, tt.wantTag
				if tt.tagUncounted {
					wantCounted = 0
				}
				if tt.tagCounted != "" {
					counted = tt.tagCounted
				}
			}
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					o := &ladderOrigin{Origin: origintest.New()}
					kind := newLadderKind(name, o.Origin)
					o.next = o.Origin
					if tt.private != "" {
						o.next = origintest.Private(o.Origin, tt.private)
					}
					c := newTestCache(t, o, func(cfg *Config) { cfg.TagTTL, cfg.TagStaleMax = ttl, staleMax })
					if tt.age >= 0 {
						o.set(func(o *ladderOrigin) { o.peer = tt.peer })
						if _, r, err := kind.climb(t, c, ""); err != nil || r != rungShared {
							t.Fatalf("keeping an answer: %s, %v", r, err)
						}
						time.Sleep(tt.age) // virtual time
					}
					o.set(func(o *ladderOrigin) { o.hold, o.fail = make(chan struct{}), tt.fail })
					before := kind.counted(c, counted)

					type result struct {
						answer string
						r      rung
						err    error
					}
					results := make([]result, n)
					var wg sync.WaitGroup
					for j := range n {
						wg.Go(func() {
							a, r, err := kind.climb(t, c, tt.auth)
							results[j] = result{a, r, err}
						})
					}
					synctest.Wait() // every request answered, or waiting for the one lookup
					o.set(func(o *ladderOrigin) { close(o.hold) })
					wg.Wait()

					for j, res := range results {
						switch {
						case res.r != want:
							t.Errorf("request %d answered by %q (%v), want %q", j, res.r, res.err, want)
						case want == rungError && res.err == nil:
							t.Errorf("request %d: no error from the error rung", j)
						case want != rungError && (res.err != nil || res.answer != kind.answer):
							t.Errorf("request %d: %q, %v; want %q", j, res.answer, res.err, kind.answer)
						}
					}
					if got := kind.counted(c, counted) - before; got != wantCounted {
						t.Errorf("%q counted %d times, want %d", counted, got, wantCounted)
					}
					if a, b := o.asked(); a != tt.asCacheyd || b != tt.asClient {
						t.Errorf("origin asked %d times as cacheyd and %d as the client, want %d and %d", a, b, tt.asCacheyd, tt.asClient)
					}
					if k := kind.kept(c); k != tt.kept {
						t.Errorf("an answer kept: %v, want %v", k, tt.kept)
					}
				})
			})
		}
	}
}
