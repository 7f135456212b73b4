package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// SoakConfig configures the soak scenario ("cacheyd bench --scenarios
// soak"): nodes pull the image set through cacheyd again and again for a
// bounded time while the upstream injects faults, and part of the cache
// directory is wiped once in the middle. The zero value of each field is
// documented; DefaultSoakConfig and QuickSoakConfig give the numbers.
type SoakConfig struct {
	// Duration is how long nodes start new pulls. Zero means 30s.
	Duration time.Duration
	// Nodes pull at once, each pull with an empty content store. Zero
	// means 4.
	Nodes int
	// Images is the set pulled. Nil means QuickImages.
	Images []Image
	// FaultRate is the share of upstream requests answered with a fault
	// (a truncated body, 503, 429 with Retry-After: 0, or a slow answer,
	// in turn). Zero means 0.1; negative means none.
	FaultRate float64
	// SlowDelay is how long a slow answer waits. Zero means 300ms.
	SlowDelay time.Duration
	// Every is how often a new generation of the image set (new content
	// under new tags) is seeded upstream and pulled from then on, so that
	// cacheyd keeps filling, and meeting faults, through the whole run.
	// Zero means 5s; negative means the set is seeded once.
	Every time.Duration
	// Retries is how often a node retries a failed image pull, as
	// containerd's client does when the kubelet asks again. Zero means 3.
	Retries int
	// Resume is how often a node resumes a broken download. Zero means
	// DefaultResume.
	Resume int
	// Start starts the in-process cacheyd; it must serve /metrics. Nil
	// means the harness's own wiring with metrics.
	Start Starter
	// Dir holds its cache. Empty means a temporary directory, removed at
	// the end.
	Dir string
	// JSON makes RunSoak write the report as JSON rather than as text.
	JSON bool
}

// DefaultSoakConfig is "cacheyd bench --scenarios soak".
func DefaultSoakConfig() SoakConfig {
	return SoakConfig{
		Duration: 30 * time.Second, Nodes: 4, Images: QuickImages(), FaultRate: 0.1,
		SlowDelay: 300 * time.Millisecond, Every: 5 * time.Second, Retries: 3, Resume: DefaultResume,
	}
}

// QuickSoakConfig is a soak of three seconds.
func QuickSoakConfig() SoakConfig {
	c := DefaultSoakConfig()
	c.Duration, c.SlowDelay, c.Every = 3*time.Second, 50*time.Millisecond, time.Second
	return c
}

func (c SoakConfig) withDefaults() (SoakConfig, error) {
	d := DefaultSoakConfig()
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Nodes == 0 {
		c.Nodes = d.Nodes
	}
	if c.Images == nil {
		c.Images = d.Images
	}
	if c.FaultRate == 0 {
		c.FaultRate = d.FaultRate
	}
	if c.SlowDelay == 0 {
		c.SlowDelay = d.SlowDelay
	}
	if c.Every == 0 {
		c.Every = d.Every
	}
	if c.Retries == 0 {
		c.Retries = d.Retries
	}
	if c.Resume == 0 {
		c.Resume = d.Resume
	}
	if c.Start == nil {
		c.Start = startCacheyd
	}
	if c.Duration < 0 || c.Nodes < 1 || c.Nodes > 256 || c.FaultRate > 1 || c.SlowDelay < 0 || c.Retries < 0 || c.Resume < 0 {
		return c, errors.New("bench: soak: want a positive duration, 1 to 256 nodes, a fault rate up to 1")
	}
	if err := validateImages(c.Images); err != nil {
		return c, fmt.Errorf("bench: soak: %w", err)
	}
	return c, nil
}

// SoakReport is what a soak measured.
type SoakReport struct {
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	// Pulls completed (every image, every digest verified, perhaps after
	// retries) and failed (still failing after the retries).
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	// Retried counts image pulls retried after a failure.
	Retried int64 `json:"retried"`
	// DigestFailures counts fetches whose bytes did not match their
	// digest: the upstream never sends wrong bytes, so each is cacheyd's.
	DigestFailures int64    `json:"digest_failures"`
	Failures       []string `json:"failures,omitempty"`
	// RetryReasons are why image pulls were retried, with counts.
	RetryReasons []string `json:"retry_reasons,omitempty"`
	// Faults counts the faults injected, by kind.
	Faults map[string]int64 `json:"faults"`
	// Generations is how many times the image set was seeded.
	Generations int `json:"generations"`
	// Wiped is how many files of the cache directory were removed in the
	// middle of the run.
	Wiped int `json:"wiped"`
	// Metrics are cacheyd's fill and upstream request counters at the end.
	Metrics []string `json:"metrics"`
	// Goroutines and RSS of the process with cacheyd running: at the
	// start (before the nodes) and at the end (the nodes done).
	GoroutinesStart int     `json:"goroutines_start"`
	GoroutinesEnd   int     `json:"goroutines_end"`
	RSSStart        int64   `json:"rss_start"`
	RSSEnd          int64   `json:"rss_end"`
	RSSPeak         int64   `json:"rss_peak"`
	Seconds         float64 `json:"seconds"`

	mu sync.Mutex // guards the counts above while the nodes pull
}

// Fault kinds, in the order they are injected.
var faultKinds = []string{"truncated", "503", "429", "slow"}

// RunSoak runs the soak scenario and writes its report to out.
func RunSoak(ctx context.Context, cfg SoakConfig, out io.Writer) (*SoakReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	rep := &SoakReport{
		Date: began, Faults: map[string]int64{},
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()},
	}
	reg, err := registrytest.NewServer(registrytest.Options{Token: true, Redirect: true})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	var current atomic.Pointer[catalog] // the generation nodes pull now
	seed := func() error {
		cat, err := seedImages(ctx, reg, cfg.Images, "linux/amd64", "-g"+strconv.Itoa(rep.Generations))
		if err != nil {
			return fmt.Errorf("bench: soak: seed: %w", err)
		}
		rep.Generations++
		current.Store(cat)
		return nil
	}
	if err := seed(); err != nil {
		return nil, err
	}
	var counts [4]atomic.Int64 // by faultKinds
	reg.SetHook(faultHook(cfg, &counts))

	base, dir, stop, cleanup, err := startForScenario(ctx, cfg.Start, cfg.Dir, "soak", reg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	pid := os.Getpid()
	rep.GoroutinesStart, rep.RSSStart = runtime.NumGoroutine(), readRSS(pid)
	stopRSS := sampleRSS(pid)

	bcfg := &Config{Platform: "linux/amd64", Parallel: 3, Resume: cfg.Resume}
	deadline := time.Now().Add(cfg.Duration)
	var (
		mu       sync.Mutex // guards reasons and retryWhy
		reasons  = map[string]int{}
		retryWhy = map[string]int{}
		wg       sync.WaitGroup
	)
	wipeAt := time.NewTimer(cfg.Duration / 2)
	defer wipeAt.Stop()
	wiped := make(chan int, 1)
	// Stops after one wipe, or when ctx ends.
	go func() {
		select {
		case <-wipeAt.C:
			wiped <- wipeHalf(dir)
		case <-ctx.Done():
			wiped <- 0
		}
	}()
	for range cfg.Nodes {
		// Stops once the deadline has passed (a pull under way finishes
		// first: every pull is bounded by the puller's timeouts) or ctx
		// ends.
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				ok, retried, digest, why := soakPull(ctx, base, reg.Host(), bcfg, current.Load(), cfg.Retries)
				rep.add(ok, len(retried), digest)
				mu.Lock()
				if why != "" {
					reasons[why]++
				}
				for _, w := range retried {
					retryWhy[w]++
				}
				mu.Unlock()
			}
		})
	}
	var serr error
	if cfg.Every > 0 {
		tick := time.NewTicker(cfg.Every)
		end := time.NewTimer(time.Until(deadline))
	seeding:
		for serr == nil {
			select {
			case <-tick.C:
				serr = seed()
			case <-end.C:
				break seeding
			case <-ctx.Done():
				break seeding
			}
		}
		tick.Stop()
		end.Stop()
	}
	wg.Wait()
	rep.Wiped = <-wiped
	rep.GoroutinesEnd, rep.RSSEnd = runtime.NumGoroutine(), readRSS(pid)
	rep.RSSPeak = stopRSS()
	m, merr := scrapeMetrics(ctx, base, "cacheyd_fills_total", "cacheyd_upstream_requests_total", "cacheyd_fill_joins_total")
	serr = errors.Join(serr, stop())
	for i, k := range faultKinds {
		rep.Faults[k] = counts[i].Load()
	}
	rep.Metrics = m
	for why, n := range reasons {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d× %s", n, why))
	}
	sort.Strings(rep.Failures)
	for why, n := range retryWhy {
		rep.RetryReasons = append(rep.RetryReasons, fmt.Sprintf("%d× %s", n, why))
	}
	sort.Strings(rep.RetryReasons)
	rep.Seconds = time.Since(began).Seconds()
	if cfg.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.write(out, cfg)
	}
	return rep, errors.Join(err, merr, serr, ctx.Err())
}

func (r *SoakReport) add(ok bool, retried int, digest int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.Completed++
	} else {
		r.Failed++
	}
	r.Retried += int64(retried)
	r.DigestFailures += int64(digest)
}

// soakPull pulls every image of cat with a new node (an empty content
// store), retrying an image that failed up to retries times. It reports
// whether every image arrived, why each retry was needed, how many digest
// mismatches were seen, and why it failed.
func soakPull(ctx context.Context, base, ns string, cfg *Config, cat *catalog, retries int) (ok bool, retried []string, digest int, why string) {
	ok = true
	for _, img := range cat.images {
		one := &catalog{images: []seeded{img}}
		for attempt := 0; ; attempt++ {
			nd := newNode(base, ns, cfg, nil)
			res := nd.pull(ctx, one)
			for _, f := range res.fetches {
				if f.Err != nil && strings.Contains(f.Err.Error(), "digest mismatch") {
					digest++
				}
			}
			if len(res.errs) == 0 {
				break
			}
			if attempt == retries || ctx.Err() != nil {
				return false, retried, digest, shorten(res.errs[0].Error())
			}
			retried = append(retried, shorten(res.errs[0].Error()))
		}
	}
	return ok, retried, digest, ""
}

// faultHook injects a fault into a share cfg.FaultRate of the requests for
// content (manifests, blobs, the CDN), evenly spread (with 0.1, every
// tenth), the kinds in turn, counting them. Evenly rather than at random:
// a run of n content requests meets exactly floor(n × rate) faults.
func faultHook(cfg SoakConfig, counts *[4]atomic.Int64) registrytest.Hook {
	var seen, nth atomic.Int64 // content requests, faults
	// 256 bytes: short enough to cut manifests and configs too; bodies
	// no longer than that pass whole.
	truncate := registrytest.Truncate(nil, 256)
	fail503 := registrytest.Fail(nil, http.StatusServiceUnavailable, 0)
	fail429 := registrytest.Fail(nil, http.StatusTooManyRequests, 0)
	return func(w http.ResponseWriter, req *http.Request) bool {
		rq := registrytest.Recorded(req)
		switch rq.Kind {
		case registrytest.KindManifest, registrytest.KindBlob, registrytest.KindCDN:
		default:
			return false
		}
		if cfg.FaultRate <= 0 {
			return false
		}
		n := seen.Add(1)
		if int64(float64(n)*cfg.FaultRate) == int64(float64(n-1)*cfg.FaultRate) {
			return false
		}
		k := int(nth.Add(1)-1) % len(faultKinds)
		counts[k].Add(1)
		switch faultKinds[k] {
		case "truncated":
			return truncate(w, req)
		case "503":
			return fail503(w, req)
		case "429":
			w.Header().Set("Retry-After", "0")
			return fail429(w, req)
		default: // slow
			t := time.NewTimer(cfg.SlowDelay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-req.Context().Done():
				return true
			}
			return false
		}
	}
}

// wipeHalf removes every other regular file under dir, as an operator
// clearing part of a cache directory would, and returns how many.
func wipeHalf(dir string) int {
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	n := 0
	for i := 0; i < len(files); i += 2 {
		if os.Remove(files[i]) == nil {
			n++
		}
	}
	return n
}

// scrapeMetrics returns the samples of base's /metrics whose names are
// among names.
func scrapeMetrics(ctx context.Context, base string, names ...string) ([]string, error) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: soak: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: soak: metrics: status %d", resp.StatusCode)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if strings.HasPrefix(line, n+"{") || strings.HasPrefix(line, n+" ") {
				out = append(out, line)
			}
		}
	}
	return out, sc.Err()
}

func (r *SoakReport) write(out io.Writer, cfg SoakConfig) error {
	var b []byte
	b = fmt.Appendf(b, "soak: %s, %d nodes, fault rate %.2f, %s %s/%s, go %s, %d CPUs\n", cfg.Duration, cfg.Nodes, cfg.FaultRate,
		r.Date.UTC().Format(time.RFC3339), r.Machine.OS, r.Machine.Arch, r.Machine.GoVersion, r.Machine.CPUs)
	b = fmt.Appendf(b, "pulls completed %d, failed %d, image pulls retried %d, digest failures %d\n",
		r.Completed, r.Failed, r.Retried, r.DigestFailures)
	for _, f := range r.Failures {
		b = fmt.Appendf(b, "  failure: %s\n", f)
	}
	for _, f := range r.RetryReasons {
		b = fmt.Appendf(b, "  retried: %s\n", f)
	}
	var fk []string
	for _, k := range faultKinds {
		fk = append(fk, k+"="+strconv.FormatInt(r.Faults[k], 10))
	}
	b = fmt.Appendf(b, "faults injected: %s; image set seeded %d times; cache files wiped mid-run: %d\n",
		strings.Join(fk, " "), r.Generations, r.Wiped)
	b = fmt.Appendf(b, "goroutines (process) start %d, end %d; RSS start %s, end %s, peak %s; %.1fs\n",
		r.GoroutinesStart, r.GoroutinesEnd, humanize.IBytes(uint64(r.RSSStart)), humanize.IBytes(uint64(r.RSSEnd)),
		humanize.IBytes(uint64(r.RSSPeak)), r.Seconds)
	for _, m := range r.Metrics {
		b = fmt.Appendf(b, "  %s\n", m)
	}
	_, err := out.Write(b)
	return err
}
