package upstream

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Budget is what a registry last said of cacheyd's pull budget there: its
// manifest GETs per window, how many are left, and whose budget it is.
// Docker Hub counts manifest GETs, never HEADs nor blobs.
type Budget struct {
	// Registry is the canonical registry name.
	Registry string
	// Limit and Remaining are pulls per window and pulls left in it.
	Limit, Remaining int64
	// Window is the budget's window; zero when the registry did not say.
	Window time.Duration
	// Seen is when the registry last stated its budget.
	Seen time.Time
	// Source is whose budget it is (Docker Hub's docker-ratelimit-source:
	// cacheyd's address or account); empty when not stated.
	Source string
	// HeldUntil is when manifest GETs go to the registry again: until
	// then, with its budget spent or after its 429, they are answered 429
	// at once. Zero when they go.
	HeldUntil time.Time
}

// Spending the budget last: a registry whose budget is spent (remaining 0)
// or that answered a manifest GET 429 is sent no more manifest GETs until
// its Retry-After, or the time until its window starts again
// (RateLimit-Reset), or else its whole window, has passed (an answer that
// announces none of these holds nothing); they are answered
// 429 TOOMANYREQUESTS at once, as the registry would, with a Retry-After of
// what is left, so that the cache serves the tag's last answer stale.
// HEADs (which resolve tags) and blobs still go: Docker Hub counts neither,
// and each HEAD's answer is read as a GET's is, so that one stating budget
// left ends the hold early and one stating it spent holds from then. Only
// cacheyd's own budget is kept: an answer to a client's own Authorization
// states the client's, and is neither read nor held.

// maxBudgets bounds how many registries' budgets are kept: registry names
// come from clients, and only registries that answer with a budget or a
// 429 take an entry.
const maxBudgets = 2 * maxRegistryLabels

// budgets are the registries' budgets as last stated.
type budgets struct {
	now     func() time.Time
	labels  *registryLabels
	metrics *metrics.Metrics
	log     *slog.Logger

	mu    sync.Mutex         // guards byReg
	byReg map[string]*Budget // canonical registry name → its budget
}

func newBudgets(now func() time.Time, labels *registryLabels, m *metrics.Metrics, log *slog.Logger) *budgets {
	return &budgets{now: now, labels: labels, metrics: m, log: log, byReg: make(map[string]*Budget)}
}

// observe reads the budget stated on a manifest answer of registry, counts
// a pull when the registry counts one, and holds manifest GETs when the
// budget is spent.
func (b *budgets) observe(registry string, req *oci.Request, resp *http.Response) {
	if req.Kind != oci.KindManifest || req.Authorization != "" {
		return
	}
	label := b.labels.of(registry)
	get, status := req.Method == http.MethodGet, resp.StatusCode
	if get && !oci.RefusedStatus(status) && status != http.StatusTooManyRequests {
		b.metrics.UpstreamPulls.WithLabelValues(label).Inc()
	}
	rl, ok, why := parseRateLimit(resp.Header)
	if why != "" {
		b.log.Debug("ignoring an unreadable pull budget", "registry", registry, "why", why)
	}
	limited := status == http.StatusTooManyRequests
	if !ok && !limited {
		return
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	bud := b.byReg[registry]
	if bud == nil {
		if len(b.byReg) >= maxBudgets {
			return
		}
		bud = &Budget{Registry: registry}
		b.byReg[registry] = bud
	}
	if ok {
		bud.Limit, bud.Remaining, bud.Window, bud.Seen, bud.Source = rl.limit, rl.remaining, rl.window, now, rl.source
		if label != otherRegistryLabel {
			b.metrics.RateLimitLimit.WithLabelValues(label).Set(float64(rl.limit))
			b.metrics.RateLimitRemaining.WithLabelValues(label).Set(float64(rl.remaining))
			b.metrics.RateLimitWindow.WithLabelValues(label).Set(rl.window.Seconds())
		}
	}
	switch {
	case limited || (ok && rl.remaining == 0):
		// Held only as long as announced: a 429 saying nothing of when
		// to come back (or Retry-After: 0) is left to the caller's backoff.
		if d := holdFor(rl, resp.Header.Get("Retry-After")); d > 0 {
			bud.HeldUntil = now.Add(d)
		}
	case ok:
		bud.HeldUntil = time.Time{} // budget left: the hold is over
	}
}

// holdFor is how long manifest GETs are held after an answer stating rl
// (zero if none) and retryAfter: the Retry-After when it can be read (0
// included), else the time until the window starts again, else the
// window; zero when the answer announced none of them.
func holdFor(rl rateLimit, retryAfter string) time.Duration {
	if d, ok := (&oci.Error{RetryAfterHeader: retryAfter}).RetryAfter(); ok {
		return max(d, 0)
	}
	if rl.reset > 0 {
		return rl.reset
	}
	return rl.window
}

// held answers a manifest GET of cacheyd's for registry with a 429 while
// its budget is held, and counts it; nil when the GET may go.
func (b *budgets) held(registry string, req *oci.Request) error {
	if req.Kind != oci.KindManifest || req.Method != http.MethodGet || req.Authorization != "" {
		return nil
	}
	b.mu.Lock()
	bud := b.byReg[registry]
	var left time.Duration
	if bud != nil && !bud.HeldUntil.IsZero() {
		left = bud.HeldUntil.Sub(b.now())
	}
	b.mu.Unlock()
	if left <= 0 {
		return nil
	}
	b.metrics.RateLimitHeld.WithLabelValues(b.labels.of(registry)).Inc()
	secs := int64((left + time.Second - 1) / time.Second) // rounded up: never ask back early
	return &oci.Error{
		Status:           http.StatusTooManyRequests,
		Code:             oci.CodeTooManyRequests,
		Message:          fmt.Sprintf("upstream %s: pull budget spent; manifests are fetched again in %ds", registry, secs),
		RetryAfterHeader: strconv.FormatInt(secs, 10),
		// The registry's answer, repeated: it said its budget was spent.
		Upstream: true,
	}
}

// all returns a copy of every budget, by registry name.
func (b *budgets) all() []Budget {
	b.mu.Lock()
	out := make([]Budget, 0, len(b.byReg))
	for _, bud := range b.byReg {
		out = append(out, *bud)
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y Budget) int { return strings.Compare(x.Registry, y.Registry) })
	return out
}

// Remaining is what registry last said is left of cacheyd's pull budget
// there; stated is false when it has said nothing. It is read on every
// manifest GET of a fallback with a reserve: one lookup, no copy of the
// other registries' budgets.
func (c *Client) Remaining(registry string) (left int64, stated bool) {
	c.budgets.mu.Lock()
	defer c.budgets.mu.Unlock()
	if b := c.budgets.byReg[registry]; b != nil && !b.Seen.IsZero() {
		return b.Remaining, true
	}
	return 0, false
}

// Budget is what registry last said of cacheyd's pull budget there;
// stated is false when it has said nothing. A member answering another's
// manifest request states it.
func (c *Client) Budget(registry string) (b Budget, stated bool) {
	c.budgets.mu.Lock()
	defer c.budgets.mu.Unlock()
	if p := c.budgets.byReg[registry]; p != nil && !p.Seen.IsZero() {
		return *p, true
	}
	return Budget{}, false
}

// Budgets returns what each registry last said of cacheyd's pull budget
// there, by registry name: this replica's own reading, which its metrics
// show too.
func (c *Client) Budgets() []Budget { return c.budgets.all() }
