package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// loadTarget is what the clients ask for.
type loadTarget struct {
	base, ns       string // cacheyd, and the registry asked for with ?ns=
	repo, fillRepo string // the hits' repository; the cold fill's
	// manifest and disk are the hits; fill is the cold blob.
	manifest, disk, fill object
}

// puller asks cacheyd for the target's registry over c.
func (tg *loadTarget) puller(c *http.Client) *puller.Puller {
	return &puller.Puller{Client: c, Base: tg.base, Namespace: tg.ns}
}

// RunLoad runs the load scenario and writes its report to out.
func RunLoad(ctx context.Context, cfg LoadConfig, out io.Writer) (*LoadReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	began := time.Now()
	rep := &LoadReport{
		Date: began, Conns: cfg.Conns,
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()},
	}
	rep.GoroutinesBase = runtime.NumGoroutine()

	reg, err := registrytest.NewServer(registrytest.Options{Token: true, Redirect: true})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	imgs := []Image{
		{"load/small", "v1", []string{"linux/amd64"}, []Layer{{Size: Size(cfg.SmallLayer)}}},
		{"load/big", "v1", []string{"linux/amd64"}, []Layer{{Size: Size(cfg.FillSize)}}},
	}
	cat, err := seedImages(ctx, reg, imgs, "linux/amd64", "")
	if err != nil {
		return nil, fmt.Errorf("bench: load: seed: %w", err)
	}
	tg := &loadTarget{ns: reg.Host(), repo: "load/small", fillRepo: "load/big"}
	tg.manifest, tg.disk = largestOf(cat.images[0].want, true), largestOf(cat.images[0].want, false)
	tg.fill = largestOf(cat.images[1].want, false)
	// Only the cold fill is slow: hits are measured against cacheyd, not
	// against the upstream.
	reg.SetHook(registrytest.Throttle(reg.BlobBytes(tg.fill.digest.String()), cfg.FillBandwidth))

	base, _, stop, cleanup, err := startForScenario(ctx, cfg.Start, cfg.Dir, "load", reg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	tg.base = base

	// Prime: the manifest lands in memory, the layer on disk.
	prime := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, o := range []object{tg.manifest, tg.disk} {
		if _, err := hit(ctx, tg.puller(prime), tg.repo, o, true); err != nil {
			return nil, fmt.Errorf("bench: load: priming: %w", err)
		}
	}
	prime.CloseIdleConnections()
	rep.GoroutinesIdle = runtime.NumGoroutine()

	stopRSS := sampleRSS(os.Getpid())
	stopG := sampleGoroutines()
	var phase atomic.Int32 // phaseBefore, phaseDuring, phaseAfter
	halt := make(chan struct{})
	results := make([]clientResult, cfg.Conns)
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		// Each stops when halt closes or ctx ends.
		wg.Go(func() { results[i] = loadClient(ctx, tg, i, cfg.DiskEvery, &phase, halt) })
	}
	timer := time.NewTimer(cfg.Before)
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	phase.Store(phaseDuring)
	fillStart := time.Now()
	fc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	n, ferr := hit(ctx, tg.puller(fc), tg.fillRepo, tg.fill, true)
	fc.CloseIdleConnections()
	rep.FillSeconds, rep.FillOK, rep.FillBytes = time.Since(fillStart).Seconds(), ferr == nil, n
	rep.FillSize = tg.fill.size
	phase.Store(phaseAfter)
	timer.Reset(cfg.After)
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	close(halt)
	wg.Wait()
	rep.GoroutinesPeak = stopG()
	rep.GoroutinesAfter = runtime.NumGoroutine()
	rep.PeakRSS = stopRSS()
	if cfg.Settle > 0 {
		rep.GoroutinesSettled, rep.SettleSeconds = settle(ctx, rep.GoroutinesIdle+rep.GoroutinesIdle/10, cfg.Settle)
	}
	if err := stop(); err != nil {
		return rep, fmt.Errorf("bench: load: stop cacheyd: %w", err)
	}
	if ferr != nil {
		rep.ErrorMsg = append(rep.ErrorMsg, "fill: "+ferr.Error())
	}

	var lat [phases][hitKinds][]float64
	for _, r := range results {
		rep.Requests += r.requests
		rep.Errors += r.errors
		if r.firstErr != nil && len(rep.ErrorMsg) < maxFailures {
			rep.ErrorMsg = append(rep.ErrorMsg, shorten(r.firstErr.Error()))
		}
		for p := range phases {
			for k := range hitKinds {
				lat[p][k] = append(lat[p][k], r.lat[p][k]...)
			}
		}
	}
	for p := range phases {
		for k := range hitKinds {
			v := lat[p][k]
			slices.Sort(v)
			w := LoadWindow{Phase: phaseNames[p], Kind: hitNames[k], Requests: len(v),
				P50: quantile(v, 0.50), P99: quantile(v, 0.99), Max: quantile(v, 1)}
			rep.Windows = append(rep.Windows, w)
		}
	}
	rep.Seconds = time.Since(began).Seconds()
	if cfg.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.write(out, tg)
	}
	if err != nil {
		return rep, fmt.Errorf("bench: load: write report: %w", err)
	}
	return rep, ctx.Err()
}

// largestOf returns the largest manifest (or blob) of objs.
func largestOf(objs []object, manifest bool) object {
	var best object
	for _, o := range objs {
		if o.manifest == manifest && o.size >= best.size {
			best = o
		}
	}
	return best
}
