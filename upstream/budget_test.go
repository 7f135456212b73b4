package upstream

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fetchManifest fetches a manifest by tag with method and reads its body.
func fetchManifest(t *testing.T, c *Client, method, repo, tag string) error {
	t.Helper()
	req := manifestOf(repo, tag)
	req.Method = method
	resp, err := c.Fetch(t.Context(), req)
	if err == nil {
		readBody(t, resp)
	}
	return err
}

// TestBudgetGauges: the gauges follow the registry's headers on GETs and
// HEADs, and pulls_total counts exactly the pulls the registry counted.
func TestBudgetGauges(t *testing.T) {
	clock := newTestClock()
	reg, c := fakeRegistry(t, registrytest.Options{PullLimit: 10}, Config{Now: clock.now})
	img := seed(t, reg, "team/app", "v1")
	for _, method := range []string{"GET", "HEAD", "GET", "GET", "HEAD"} {
		if err := fetchManifest(t, c, method, img.repo, "v1"); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
	if err := fetchVerified(t, c, blobOf(img.repo, img.blobs[0]), img.blobs[0]); err != nil {
		t.Fatal(err)
	}
	counted, refused := reg.Pulls()
	if counted != 3 || refused != 0 {
		t.Fatalf("registry counted %d pulls, refused %d; want 3, 0", counted, refused)
	}
	m := c.metrics
	for name, got := range map[string]float64{
		"limit":          testutil.ToFloat64(m.RateLimitLimit.WithLabelValues(testRegistry)),
		"remaining":      testutil.ToFloat64(m.RateLimitRemaining.WithLabelValues(testRegistry)),
		"window_seconds": testutil.ToFloat64(m.RateLimitWindow.WithLabelValues(testRegistry)),
		"pulls_total":    testutil.ToFloat64(m.UpstreamPulls.WithLabelValues(testRegistry)),
	} {
		want := map[string]float64{"limit": 10, "remaining": 7, "window_seconds": 21600, "pulls_total": float64(counted)}[name]
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	want := []Budget{{Registry: testRegistry, Limit: 10, Remaining: 7, Window: 6 * time.Hour, Seen: clock.now()}}
	if got := c.Budgets(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("Budgets() = %+v, want %+v", got, want)
	}
	if got, ok := c.Budget(testRegistry); !ok || got != want[0] {
		t.Errorf("Budget(%s) = %+v, %v; want %+v", testRegistry, got, ok, want[0])
	}
	if got, ok := c.Budget("ghcr.io"); ok {
		t.Errorf("Budget(ghcr.io) = %+v, stated; want none", got)
	}
}

// TestBudgetSpentLast: once the budget is spent, a burst of manifest GETs
// sends not one more GET until the window has passed, each answered 429
// with what is left of it; HEADs and blobs still go; then GETs resume.
func TestBudgetSpentLast(t *testing.T) {
	clock := newTestClock()
	reg, c := fakeRegistry(t, registrytest.Options{PullLimit: 2}, Config{Now: clock.now})
	img := seed(t, reg, "team/app", "v1")
	for range 2 {
		if err := fetchManifest(t, c, "GET", img.repo, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(time.Hour)

	const burst = 20
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for range burst {
		wg.Go(func() { errs <- fetchManifest(t, c, "GET", img.repo, "v1") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e, ok := oci.AsError(err)
		if !ok || e.Status != http.StatusTooManyRequests || e.Code != oci.CodeTooManyRequests || e.RetryAfterHeader != "18000" {
			t.Fatalf("held GET: %v (Retry-After %q), want 429 TOOMANYREQUESTS with Retry-After 18000", err, retryAfterOf(err))
		}
		// What the cache reads to serve a tag's last answer stale
		// (cache/lookup.go stalable), and to relay it as the registry's.
		if !e.Retryable() || !oci.FromUpstream(err) {
			t.Fatalf("held GET: %v is not retryable as the registry's answer", err)
		}
	}
	if n := reg.Count("GET", registrytest.KindManifest, ""); n != 2 {
		t.Errorf("manifest GETs sent = %d, want 2", n)
	}
	if n := testutil.ToFloat64(c.metrics.RateLimitHeld.WithLabelValues(testRegistry)); n != burst {
		t.Errorf("held = %v, want %d", n, burst)
	}
	if err := fetchManifest(t, c, "HEAD", img.repo, "v1"); err != nil {
		t.Errorf("HEAD while held: %v", err)
	}
	if err := fetchVerified(t, c, blobOf(img.repo, img.blobs[1]), img.blobs[1]); err != nil {
		t.Errorf("blob while held: %v", err)
	}
	if counted, refused := reg.Pulls(); counted != 2 || refused != 0 {
		t.Errorf("registry counted %d pulls, refused %d; want 2, 0", counted, refused)
	}

	// The HEAD said the budget was still spent, an hour in: GETs are held
	// for the window from then. Once it has passed, the registry counts
	// again (a new window), and GETs go.
	reg.Reset()
	clock.advance(6*time.Hour - time.Second)
	if err := fetchManifest(t, c, "GET", img.repo, "v1"); retryAfterOf(err) != "1" {
		t.Fatalf("GET a second before the window ends: %v, want 429 with Retry-After 1", err)
	}
	clock.advance(time.Second)
	if err := fetchManifest(t, c, "GET", img.repo, "v1"); err != nil {
		t.Fatalf("GET after the window: %v", err)
	}
	if counted, _ := reg.Pulls(); counted != 1 {
		t.Errorf("pulls after the window = %d, want 1", counted)
	}
}

// TestBudgetAfter429: a registry's 429 holds manifest GETs for its
// Retry-After, and only as long; a HEAD stating budget left ends the hold
// early.
func TestBudgetAfter429(t *testing.T) {
	clock := newTestClock()
	var mu sync.Mutex // guards gets, refuse
	gets, refuse := 0, true
	c := serveRegistry(t, Config{Now: clock.now}, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodGet {
			gets++
		}
		if r.Method == http.MethodGet && refuse {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("RateLimit-Limit", "100;w=600")
		w.Header().Set("RateLimit-Remaining", "50;w=600")
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Write([]byte("{}"))
	})
	getsNow := func() int { mu.Lock(); defer mu.Unlock(); return gets }
	get := func() error {
		resp, err := c.Fetch(t.Context(), manifestRequest("GET", "v1"))
		if err == nil {
			readBody(t, resp)
		}
		return err
	}
	if err := get(); !isStatus(err, http.StatusTooManyRequests) {
		t.Fatalf("first GET: %v, want the registry's 429", err)
	}
	for range 5 {
		if err := get(); !isStatus(err, http.StatusTooManyRequests) || retryAfterOf(err) != "30" {
			t.Fatalf("held GET: %v (Retry-After %q), want 429 with Retry-After 30", err, retryAfterOf(err))
		}
	}
	clock.advance(29 * time.Second)
	if err := get(); retryAfterOf(err) != "1" {
		t.Errorf("held GET a second before the end: %v (Retry-After %q), want Retry-After 1", err, retryAfterOf(err))
	}
	if n := getsNow(); n != 1 {
		t.Fatalf("GETs sent while held = %d, want 1", n)
	}
	clock.advance(time.Second)
	mu.Lock()
	refuse = false
	mu.Unlock()
	if err := get(); err != nil {
		t.Fatalf("GET after Retry-After: %v", err)
	}
	if n := getsNow(); n != 2 {
		t.Errorf("GETs sent = %d, want 2", n)
	}

	// Held again by a 429; a HEAD that states budget left lifts the hold.
	mu.Lock()
	refuse = true
	mu.Unlock()
	if err := get(); !isStatus(err, http.StatusTooManyRequests) {
		t.Fatalf("GET: %v, want the registry's 429", err)
	}
	resp, err := c.Fetch(t.Context(), manifestRequest("HEAD", "v1"))
	if err != nil {
		t.Fatalf("HEAD: %v", err)
	}
	readBody(t, resp)
	mu.Lock()
	refuse = false
	mu.Unlock()
	if err := get(); err != nil {
		t.Fatalf("GET after a HEAD with budget left: %v", err)
	}
	if n := getsNow(); n != 4 {
		t.Errorf("GETs sent = %d, want 4", n)
	}
}

func isStatus(err error, status int) bool {
	e, ok := oci.AsError(err)
	return ok && e.Status == status
}

func retryAfterOf(err error) string {
	var e *oci.Error
	if errors.As(err, &e) {
		return e.RetryAfterHeader
	}
	return ""
}

// TestHoldFor: a hold lasts as long as the answer announced, Retry-After
// first; an answer that announced nothing, or Retry-After: 0, holds nothing.
func TestHoldFor(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rl         rateLimit
		retryAfter string
		want       time.Duration
	}{
		{"retry-after", rateLimit{window: time.Hour, reset: time.Minute}, "30", 30 * time.Second},
		{"retry-after zero", rateLimit{window: time.Hour}, "0", 0},
		{"reset", rateLimit{window: time.Hour, reset: time.Minute}, "", time.Minute},
		{"window", rateLimit{window: time.Hour}, "", time.Hour},
		{"unreadable retry-after", rateLimit{window: time.Hour}, "soon", time.Hour},
		{"nothing announced", rateLimit{}, "", 0},
	} {
		if got := holdFor(tc.rl, tc.retryAfter); got != tc.want {
			t.Errorf("%s: holdFor = %v, want %v", tc.name, got, tc.want)
		}
	}
}
