package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// runNodes runs n nodes at once, node i against base[i mod len(base)] with
// namespace ns, each adding the bytes it receives to received, and returns
// once every run has returned (the caller's context bounds them).
func (r *runner) runNodes(n int, base []string, ns string, received *atomic.Int64, run func(i int, nd *node)) {
	var wg sync.WaitGroup
	for i := range n {
		nd := newNode(base[i%len(base)], ns, r.cfg, func(b int64) { received.Add(b) })
		wg.Go(func() { run(i, nd) })
	}
	wg.Wait()
}

// burst has n nodes pull the set from base at once and measures it: node
// i from base[i mod len(base)].
func (r *runner) burst(ctx context.Context, sc Scenario, n int, base []string, ns string) Result {
	r.resetUpstreams()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.BurstTimeout)
	defer cancel()
	var received atomic.Int64
	stopBar := r.bar(fmt.Sprintf("%-6s ×%-4d", sc, n), int64(n)*r.cat.bytes, &received)
	var stopRSS func() int64
	var cpuStart float64
	if r.cfg.TargetPID > 0 && sc != Direct {
		stopRSS = sampleRSS(r.cfg.TargetPID)
		cpuStart = readCPU(r.cfg.TargetPID)
	}

	start := time.Now()
	results := make([]nodeResult, n)
	r.runNodes(n, base, ns, &received, func(i int, nd *node) { results[i] = nd.pull(ctx, r.cat) })
	wall := time.Since(start)
	stopBar()

	res := Result{Scenario: sc, Nodes: n, Seconds: wall.Seconds(), BytesServed: received.Load()}
	if stopRSS != nil {
		res.PeakRSS = stopRSS()
		res.CPUSeconds = max(0, readCPU(r.cfg.TargetPID)-cpuStart)
	}
	res.UpstreamPulls, res.Upstream429 = r.up.reg.Pulls()
	res.UpstreamRequests = r.up.reg.Count("", "", "")
	res.UpstreamBytes = r.up.bytes.Load()
	res.AlternateBytes = r.alternateBytes()
	if sc != Direct && res.BytesServed > 0 {
		hit := max(0, 1-float64(res.UpstreamBytes+res.AlternateBytes)/float64(res.BytesServed))
		res.HitRatio = &hit
	}
	var (
		times, lags []float64
		failed      reasons
	)
	for _, nr := range results {
		if err := nr.check(r.cat); err != nil {
			failed.add(err)
			continue
		}
		res.OK++
		times = append(times, nr.end.Sub(start).Seconds())
		if sc == Direct {
			continue
		}
		for _, f := range nr.fetches {
			// Only nodes that asked before upstream's first byte were
			// waiting for it; a later one's wait is plain time to first
			// byte under the burst's load.
			up, ok := r.up.firstByte(f.Digest)
			if !ok && r.alt != nil { // the alternate sent it instead
				up, ok = r.alt.firstByte(f.Digest)
			}
			if !ok || f.FirstByte.IsZero() || f.Start.After(up) {
				continue
			}
			lags = append(lags, max(0, f.FirstByte.Sub(up).Seconds()))
		}
	}
	res.Failures = failed.list()
	res.NodeSeconds = percentiles(times)
	if sc == Cold {
		p := percentiles(lags)
		res.FirstByteLagSeconds = &p
	}
	return res
}

// resetUpstreams starts a burst at the upstream and at its alternate.
func (r *runner) resetUpstreams() {
	r.up.reset()
	if r.alt != nil {
		r.alt.reset()
	}
}

// alternateBytes is what the alternate sent since the burst began; zero
// without one.
func (r *runner) alternateBytes() int64 {
	if r.alt == nil {
		return 0
	}
	return r.alt.bytes.Load()
}

// bar shows a progress bar of received against total until the returned
// function is called; without Config.Progress it shows nothing.
func (r *runner) bar(desc string, total int64, received *atomic.Int64) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(r.cfg.Progress),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
	)
	done := make(chan struct{})
	finished := make(chan struct{})
	// Stops when stop closes done.
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = bar.Set64(min(received.Load(), total))
			case <-done:
				_ = bar.Finish()
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
