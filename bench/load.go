package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// LoadConfig configures the load scenario ("cacheyd bench --scenarios
// load"): many client connections hitting cached content while one large
// blob is filled from a slow upstream. The zero value of each field is
// documented; DefaultLoadConfig and QuickLoadConfig give the numbers.
type LoadConfig struct {
	// Conns is how many clients hit cacheyd at once, each with its own
	// TCP connection (kept alive). Zero means 1,000.
	Conns int
	// Before is how long the clients hit cacheyd before the fill starts;
	// After, how long they go on once it has finished. Zero means 5s and
	// 2s.
	Before, After time.Duration
	// SmallLayer is the size of the blob served from disk: larger than
	// the memory tier's largest object (1 MiB by default). Zero means
	// 2 MiB.
	SmallLayer int64
	// FillSize is the size of the blob filled in the middle of the run,
	// and FillBandwidth the upstream's cap on its body, in bytes per
	// second. Zero means 64 MiB at 8 MB/s (eight seconds).
	FillSize, FillBandwidth int64
	// DiskEvery makes every DiskEvery-th request of a client a disk hit,
	// the others memory hits. Zero means 4.
	DiskEvery int
	// Settle is how long the run waits, after the clients have closed
	// their connections, for the goroutine count to fall back to within
	// 10% of cacheyd's idle count (fasthttp keeps a served connection's
	// worker 10s to 20s after its last use). Zero means 25s; negative means no wait.
	Settle time.Duration
	// Timeout bounds the whole run. Zero means 5 minutes.
	Timeout time.Duration
	// Start starts the in-process cacheyd. Nil means the harness's own
	// wiring with metrics.
	Start Starter
	// Dir holds its cache. Empty means a temporary directory, removed at
	// the end.
	Dir string
	// JSON makes RunLoad write the report as JSON rather than as text.
	JSON bool
}

// DefaultLoadConfig is "cacheyd bench --scenarios load".
func DefaultLoadConfig() LoadConfig {
	return LoadConfig{
		Conns: 1000, Before: 5 * time.Second, After: 2 * time.Second, SmallLayer: 2 << 20,
		FillSize: 64 << 20, FillBandwidth: 8_000_000, DiskEvery: 4, Settle: 25 * time.Second, Timeout: 5 * time.Minute,
	}
}

// QuickLoadConfig is a load run of seconds: 100 connections, a 4 MiB fill
// at 4 MB/s.
func QuickLoadConfig() LoadConfig {
	c := DefaultLoadConfig()
	c.Conns, c.Before, c.After = 100, time.Second, 500*time.Millisecond
	c.FillSize, c.FillBandwidth, c.Settle = 4<<20, 4_000_000, -1
	return c
}

func (c LoadConfig) withDefaults() (LoadConfig, error) {
	d := DefaultLoadConfig()
	if c.Conns == 0 {
		c.Conns = d.Conns
	}
	if c.Before == 0 {
		c.Before = d.Before
	}
	if c.After == 0 {
		c.After = d.After
	}
	if c.SmallLayer == 0 {
		c.SmallLayer = d.SmallLayer
	}
	if c.FillSize == 0 {
		c.FillSize = d.FillSize
	}
	if c.FillBandwidth == 0 {
		c.FillBandwidth = d.FillBandwidth
	}
	if c.DiskEvery == 0 {
		c.DiskEvery = d.DiskEvery
	}
	if c.Settle == 0 {
		c.Settle = d.Settle
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Start == nil {
		c.Start = startCacheyd
	}
	if c.Conns < 1 || c.Conns > 10000 || c.Before < 0 || c.After < 0 || c.SmallLayer < 1 || c.FillSize < 1 ||
		c.FillBandwidth < 0 || c.DiskEvery < 1 || c.Timeout < 0 {
		return c, errors.New("bench: load: want 1 to 10000 connections and positive sizes and durations")
	}
	return c, nil
}

// Phases of a load run, in order.
const (
	phaseBefore = iota // before the fill starts
	phaseDuring        // while the fill is in flight
	phaseAfter         // once it has finished
	phases
)

var phaseNames = [phases]string{"before fill", "during fill", "after fill"}

// Hit kinds of a load run.
const (
	hitMemory = iota // a small manifest, held in memory
	hitDisk          // a blob larger than the memory tier's largest object
	hitKinds
)

var hitNames = [hitKinds]string{"memory", "disk"}

// LoadReport is what a load run measured.
type LoadReport struct {
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	Conns   int       `json:"conns"`
	// Requests and Errors count every hit; an error is a transport error,
	// a status other than 200, or a body of the wrong length or digest.
	Requests int64    `json:"requests"`
	Errors   int64    `json:"errors"`
	ErrorMsg []string `json:"error_examples,omitempty"`
	// Windows are the hits by phase and kind.
	Windows []LoadWindow `json:"windows"`
	// FillSeconds is how long the cold fill took; FillOK whether its body
	// was complete with the right digest.
	FillSeconds float64 `json:"fill_seconds"`
	FillOK      bool    `json:"fill_ok"`
	FillBytes   int64   `json:"fill_bytes"`
	FillSize    int64   `json:"fill_size"` // the blob's size

	// Goroutines of the whole process (cacheyd and the clients): before
	// cacheyd starts, with cacheyd idle, the peak, and once the clients
	// have closed their connections (cacheyd still running).
	GoroutinesBase  int `json:"goroutines_base"`
	GoroutinesIdle  int `json:"goroutines_idle"`
	GoroutinesPeak  int `json:"goroutines_peak"`
	GoroutinesAfter int `json:"goroutines_after"`
	// GoroutinesSettled is the count once it fell back near the idle one,
	// SettleSeconds after the clients closed (or when LoadConfig.Settle
	// ran out); zero without a wait.
	GoroutinesSettled int     `json:"goroutines_settled"`
	SettleSeconds     float64 `json:"settle_seconds"`
	// PeakRSS is the process's highest resident memory during the run.
	PeakRSS int64   `json:"peak_rss"`
	Seconds float64 `json:"seconds"`
}

// LoadWindow is the hits of one kind in one phase.
type LoadWindow struct {
	Phase    string  `json:"phase"`
	Kind     string  `json:"kind"`
	Requests int     `json:"requests"`
	P50      float64 `json:"p50_seconds"`
	P99      float64 `json:"p99_seconds"`
	Max      float64 `json:"max_seconds"`
}

// loadTarget is what the clients ask for.
type loadTarget struct {
	base, ns             string
	repo                 string
	manifest, disk, fill object
	manifestURL, diskURL string
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
	tg := &loadTarget{ns: reg.Host(), repo: "load/small"}
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
	tg.manifestURL = fmt.Sprintf("%s/v2/%s/manifests/%s?ns=%s", base, tg.repo, tg.manifest.digest, tg.ns)
	tg.diskURL = fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", base, tg.repo, tg.disk.digest, tg.ns)
	fillURL := fmt.Sprintf("%s/v2/load/big/blobs/%s?ns=%s", base, tg.fill.digest, tg.ns)

	// Prime: the manifest lands in memory, the layer on disk.
	prime := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, o := range []struct {
		url string
		obj object
	}{{tg.manifestURL, tg.manifest}, {tg.diskURL, tg.disk}} {
		if _, err := fetchVerify(ctx, prime, o.url, o.obj, true); err != nil {
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
	n, ferr := fetchVerify(ctx, fc, fillURL, tg.fill, true)
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

func (r *LoadReport) write(out io.Writer, tg *loadTarget) error {
	ms := func(s float64) string { return fmt.Sprintf("%.2fms", s*1000) }
	var b []byte
	b = fmt.Appendf(b, "load: %d connections on loopback, %s %s/%s, go %s, %s\n", r.Conns,
		r.Date.UTC().Format(time.RFC3339), r.Machine.OS, r.Machine.Arch, r.Machine.GoVersion,
		fmt.Sprintf("%d CPUs", r.Machine.CPUs))
	b = fmt.Appendf(b, "memory hit: manifest of %s; disk hit: blob of %s; cold fill: blob of %s\n",
		humanize.IBytes(uint64(tg.manifest.size)), humanize.IBytes(uint64(tg.disk.size)), humanize.IBytes(uint64(tg.fill.size)))
	b = fmt.Appendf(b, "requests %d, errors %d; fill %s in %.1fs, ok=%v\n", r.Requests, r.Errors,
		humanize.IBytes(uint64(r.FillBytes)), r.FillSeconds, r.FillOK)
	for _, m := range r.ErrorMsg {
		b = fmt.Appendf(b, "  error: %s\n", m)
	}
	b = fmt.Appendf(b, "%-12s %-7s %9s %10s %10s %10s\n", "window", "hit", "requests", "p50", "p99", "max")
	for _, w := range r.Windows {
		b = fmt.Appendf(b, "%-12s %-7s %9d %10s %10s %10s\n", w.Phase, w.Kind, w.Requests, ms(w.P50), ms(w.P99), ms(w.Max))
	}
	b = fmt.Appendf(b, "goroutines (process: cacheyd and clients): %d before cacheyd, %d cacheyd idle, %d peak, %d after the clients closed\n",
		r.GoroutinesBase, r.GoroutinesIdle, r.GoroutinesPeak, r.GoroutinesAfter)
	if r.GoroutinesSettled > 0 {
		b = fmt.Appendf(b, "goroutines %.1fs after the clients closed: %d\n", r.SettleSeconds, r.GoroutinesSettled)
	}
	b = fmt.Appendf(b, "peak RSS (process): %s; %.1fs\n", humanize.IBytes(uint64(r.PeakRSS)), r.Seconds)
	_, err := out.Write(b)
	return err
}

// acceptManifests is the Accept header of a manifest hit: containerd's.
var acceptManifests = strings.Join(oci.ManifestMediaTypes, ", ")

// quantile returns the q-quantile of sorted v (nearest rank), 0 if empty.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(q*float64(len(v))+0.999999) - 1
	return v[min(max(i, 0), len(v)-1)]
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

// clientResult is what one load client did.
type clientResult struct {
	requests, errors int64
	firstErr         error
	lat              [phases][hitKinds][]float64
}

// loadClient hits cacheyd over one kept-alive connection until halt closes
// or ctx ends: memory hits, and every diskEvery-th request a disk hit.
func loadClient(ctx context.Context, tg *loadTarget, i, diskEvery int, phase *atomic.Int32, halt <-chan struct{}) clientResult {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var r clientResult
	for n := i; ; n++ { // start at i so that the clients do not all ask for the disk blob at once
		select {
		case <-halt:
			return r
		case <-ctx.Done():
			return r
		default:
		}
		kind, url, obj := hitMemory, tg.manifestURL, tg.manifest
		if n%diskEvery == 0 {
			kind, url, obj = hitDisk, tg.diskURL, tg.disk
		}
		p := phase.Load()
		start := time.Now()
		// Hashing 2 MiB on every disk hit would measure the clients' CPU:
		// every 16th is verified, every one's length checked.
		_, err := fetchVerify(ctx, c, url, obj, kind == hitMemory || n%16 == 0)
		d := time.Since(start).Seconds()
		if ctx.Err() != nil {
			return r
		}
		r.requests++
		if err != nil {
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		// A request that began before the fill and ended during it is
		// counted in the window it began in.
		r.lat[p][kind] = append(r.lat[p][kind], d)
	}
}

// fetchVerify GETs url and checks the answer is obj: status 200, its
// length, and with verify its digest. It returns the bytes read.
func fetchVerify(ctx context.Context, c *http.Client, url string, obj object, verify bool) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if obj.manifest {
		req.Header.Set("Accept", acceptManifests)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return 0, fmt.Errorf("GET %s answered %d", obj.digest.Short(), resp.StatusCode)
	}
	var w io.Writer = io.Discard
	h := sha256.New()
	if verify {
		w = h
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: after %d bytes: %w", obj.digest.Short(), n, err)
	}
	if n != obj.size {
		return n, fmt.Errorf("GET %s: %d bytes, want %d", obj.digest.Short(), n, obj.size)
	}
	if verify && oci.Digest("sha256:"+hex.EncodeToString(h.Sum(nil))) != obj.digest {
		return n, fmt.Errorf("GET %s: digest mismatch", obj.digest.Short())
	}
	return n, nil
}

// settle polls the goroutine count until it is at most want or limit has
// passed, and returns the count and how long it took.
func settle(ctx context.Context, want int, limit time.Duration) (int, float64) {
	start := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Since(start) >= limit {
			return n, time.Since(start).Seconds()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return n, time.Since(start).Seconds()
		}
	}
}

// sampleGoroutines watches the process's goroutine count until the
// returned function is called, which returns the highest seen.
func sampleGoroutines() (stop func() int) {
	done := make(chan struct{})
	peak := make(chan int, 1)
	// Stops when stop closes done.
	go func() {
		high := 0
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			high = max(high, runtime.NumGoroutine())
			select {
			case <-t.C:
			case <-done:
				peak <- high
				return
			}
		}
	}()
	return func() int {
		close(done)
		return <-peak
	}
}
