package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

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
