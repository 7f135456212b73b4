package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// Run measures every scenario of cfg for every burst size, writes the
// report to out (a table, or JSON with cfg.JSON), draws cfg.Chart if set,
// and returns the report. A burst whose nodes fail is reported, not an
// error: errors are for runs that could not measure at all (the restart
// scenario's verdict is Report.Check).
func Run(ctx context.Context, cfg Config, out io.Writer) (_ *Report, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	r := &runner{cfg: &cfg}
	if r.up, err = startHub(cfg); err != nil {
		return nil, err
	}
	defer r.up.close()
	if cfg.Alternate {
		if r.alt, err = startAlternate(cfg); err != nil {
			return nil, err
		}
		defer r.alt.close()
	}
	if slices.Contains(cfg.Scenarios, Restart) {
		if err := r.openBucket(cfg.Bucket); err != nil {
			return nil, err
		}
		if r.gw != nil {
			defer func() { err = errors.Join(err, r.gw.close()) }()
		}
	}
	if cfg.Target == "" {
		dir := cfg.Dir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "cacheyd-bench-"); err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			defer os.RemoveAll(dir)
		}
		r.dir = dir
	} else {
		// A running cacheyd may remember tags from an earlier run: tags of
		// this run are its own.
		var b [3]byte
		_, _ = rand.Read(b[:])
		r.runID = "-bench" + hex.EncodeToString(b[:])
	}
	if err := r.seed(ctx); err != nil {
		return nil, err
	}
	rep := &Report{
		Date:    began,
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()},
		Setup:   r.setup(),
	}
	for _, n := range cfg.Nodes {
		res, err := r.series(ctx, n)
		rep.Results = append(rep.Results, res...)
		if err == nil {
			err = ctx.Err() // interrupted: what the nodes report is not a measurement
		}
		if err != nil {
			return rep, err
		}
	}
	rep.Seconds = time.Since(began).Seconds()
	rep.Restarts = restartChecks(rep.Results)
	if cfg.JSON {
		err = rep.WriteJSON(out)
	} else {
		err = rep.WriteTable(out)
	}
	if err != nil {
		return rep, fmt.Errorf("bench: write report: %w", err)
	}
	if cfg.Chart != "" {
		if err := rep.WriteChart(cfg.Chart); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runner holds what the bursts of one run share.
type runner struct {
	cfg   *Config
	up    *fakeHub
	alt   *fakeHub // the upstream's alternate; nil without Config.Alternate
	dir   string   // in-process caches; empty with a Target
	runID string   // appended to tags with a Target
	// store is the bucket of the restart scenario, but for its prefix; gw
	// the versitygw serving it, when the run started one.
	store Store
	gw    *versitygw
	gen   int // how many times the set was seeded
	cat   *catalog
	// fresh reports that cat has not been pulled through a cacheyd yet.
	fresh bool
}

// seed stores a new generation of the image set upstream: new content
// under new tags (with a Target), cold for any cache.
func (r *runner) seed(ctx context.Context) error {
	suffix := ""
	if r.runID != "" {
		suffix = r.runID + "g" + strconv.Itoa(r.gen)
	}
	r.progressf("seeding the fake upstream with %d images...", len(r.cfg.Images))
	var mirrors []*registrytest.Registry
	if r.alt != nil {
		mirrors = append(mirrors, r.alt.reg)
	}
	cat, err := seedImages(ctx, r.up.reg, r.cfg.Images, r.cfg.Platform, suffix, mirrors...)
	r.progressf("\r\033[K")
	if err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	r.cat, r.fresh = cat, true
	r.gen++
	return nil
}

func (r *runner) progressf(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format, args...)
	}
}

func (r *runner) setup() Setup {
	c := r.cfg
	s := Setup{
		Images: len(r.cat.images), Manifests: r.cat.manifests, Blobs: len(r.cat.objects) - r.cat.manifests,
		Bytes: r.cat.bytes, StoredBytes: r.cat.stored, Platform: c.Platform, Bandwidth: c.Bandwidth,
		LatencySeconds: c.Latency.Seconds(), PullLimit: c.PullLimit, Parallel: c.Parallel, Target: c.Target,
		Replicas: max(c.Replicas, 1), Alternate: c.Alternate,
	}
	if r.store.Bucket != "" {
		s.Bucket = c.Bucket.describe()
	}
	if s.Replicas > 1 {
		s.Balance = c.Balance
		if s.Balance == "" {
			s.Balance = BalanceNode
		}
	}
	for _, o := range r.cat.objects {
		s.LargestBlob = max(s.LargestBlob, o.size)
	}
	s.Lazy = r.lazySetup()
	return s
}

// series runs the scenarios for one burst size.
func (r *runner) series(ctx context.Context, n int) ([]Result, error) {
	var (
		out  []Result
		base []string     // the cacheyd (or replicas) of this burst size
		stop func() error // stops it; nil with a Target
		dir  string       // its cache
		errs []error      // from stopping
		halt = func() {
			if stop != nil {
				errs = append(errs, stop())
				stop = nil
			}
			if dir != "" {
				errs = append(errs, os.RemoveAll(dir))
				dir = ""
			}
		}
	)
	defer halt()
	empty := func() (err error) { // a new cacheyd holding none of the set
		halt()
		base, stop, dir, err = r.cacheyd(ctx, n, nil)
		return err
	}
	warmable := false // base holds the set
	for _, sc := range r.cfg.Scenarios {
		switch sc {
		case Direct:
			out = append(out, r.burst(ctx, sc, n, []string{r.up.reg.URL()}, ""))
			continue
		case Restart:
			halt()
			res, err := r.restart(ctx, n)
			out = append(out, res...)
			if err != nil {
				return out, err
			}
			warmable, base = false, nil
			continue
		case LazyDirect:
			out = append(out, r.lazyBurst(ctx, sc, n, []string{r.up.reg.URL()}, ""))
			continue
		case LazyCold:
			if err := empty(); err != nil {
				return out, err
			}
			out = append(out, r.lazyBurst(ctx, sc, n, base, r.up.reg.Host()))
			warmable = false
			continue
		case Cold:
			if err := empty(); err != nil {
				return out, err
			}
		case Warm:
			if !warmable {
				if base == nil {
					var err error
					if base, stop, dir, err = r.cacheyd(ctx, n, nil); err != nil {
						return out, err
					}
				}
				if err := r.prime(ctx, base); err != nil {
					return out, err
				}
			}
		}
		res := r.burst(ctx, sc, n, base, r.up.reg.Host())
		out = append(out, res)
		warmable = true
	}
	halt()
	return out, errors.Join(errs...)
}

// cacheyd returns a cacheyd holding none of the current set: a new
// in-process one with an empty cache (naming store, if not nil), or the
// Target with the set seeded anew if it was pulled through it already.
func (r *runner) cacheyd(ctx context.Context, n int, store *Store) (base []string, stop func() error, dir string, err error) {
	if r.cfg.Target != "" {
		if !r.fresh {
			if err := r.seed(ctx); err != nil {
				return nil, nil, "", err
			}
		}
		r.fresh = false
		return []string{r.cfg.Target}, nil, "", nil
	}
	r.fresh = false
	dir = filepath.Join(r.dir, "cache-"+strconv.Itoa(n))
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, "", fmt.Errorf("bench: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, "", fmt.Errorf("bench: %w", err)
	}
	cc := CacheydConfig{Dir: dir, Registry: r.up.reg.Host(), URL: r.up.reg.URL(), CDN: r.up.reg.CDNHost(), Store: store}
	if r.alt != nil {
		cc.Alternate = r.alt.reg.URL()
	}
	if r.cfg.Replicas > 1 {
		base, stop, err = startCluster(ctx, r.cfg, dir, cc)
	} else {
		var one string
		one, stop, err = r.cfg.Start(ctx, cc)
		base = []string{one}
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("bench: start cacheyd: %w", err)
	}
	return base, stop, dir, nil
}

// prime pulls the set once through base (the first replica), untimed, so
// that a warm burst finds it there.
func (r *runner) prime(ctx context.Context, base []string) error {
	nd := newNode(base[0], r.up.reg.Host(), r.cfg, nil)
	res := nd.pull(ctx, r.cat)
	if err := res.check(r.cat); err != nil {
		return fmt.Errorf("bench: priming %s for a warm burst: %w", base, err)
	}
	return nil
}
