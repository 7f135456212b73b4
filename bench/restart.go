package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// The phases of the restart scenario, each one burst (Result.Phase).
const (
	// PhaseCold: through replicas with empty disks and an empty bucket.
	PhaseCold = "cold"
	// PhaseWiped: through new replicas, started with empty disks after
	// every replica of the cold burst stopped, naming the same bucket.
	PhaseWiped = "wiped"
	// PhaseWarm: through those new replicas again, holding the set.
	PhaseWarm = "warm"
)

// openBucket readies the restart scenario's bucket: b's store, or a
// versitygw started for the run (r.gw, which Run stops). Each run keys its
// objects under a prefix of its own, each burst size below it (restart).
func (r *runner) openBucket(b Bucket) error {
	r.store = Store{Endpoint: b.Endpoint, Bucket: b.Name, Region: b.Region, AccessKey: b.AccessKey, SecretKey: b.SecretKey}
	if b.Versitygw != "" {
		gw, err := startVersitygw(b.Versitygw, b.Name)
		if err != nil {
			return err
		}
		r.gw, r.store = gw, gw.store
	}
	r.store.Prefix = "cacheyd-bench-" + randomHex(4) + "/"
	return nil
}

// restart measures the restart scenario for n nodes: a cold burst through
// replicas naming the bucket; every replica stopped as a rolling restart
// stops it (gracefully: its queued uploads get the shutdown timeout to
// finish) and its disk wiped, as an emptyDir's is; a burst through new
// replicas with empty disks naming the same bucket; and a warm burst
// through those, the time the wiped burst is compared with.
func (r *runner) restart(ctx context.Context, n int) ([]Result, error) {
	store := r.store
	store.Prefix += strconv.Itoa(n) + "/"
	var out []Result
	for _, phase := range []string{PhaseCold, PhaseWiped} {
		base, stop, dir, err := r.cacheyd(ctx, n, &store)
		if err != nil {
			return out, err
		}
		res := r.burst(ctx, Restart, n, base, r.up.reg.Host())
		res.Phase = phase
		out = append(out, res)
		if phase == PhaseWiped && ctx.Err() == nil {
			res = r.burst(ctx, Restart, n, base, r.up.reg.Host())
			res.Phase = PhaseWarm
			out = append(out, res)
		}
		if err := errors.Join(stop(), os.RemoveAll(dir)); err != nil {
			return out, fmt.Errorf("bench: restart ×%d, %s: stop the replicas: %w", n, phase, err)
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// RestartCheck is the verdict of the restart scenario for one burst size.
type RestartCheck struct {
	Nodes int `json:"nodes"`
	// OK, UpstreamBytes and UpstreamPulls are the wiped burst's: every
	// node ok, and nothing from upstream when the bucket held the set.
	OK            int   `json:"ok"`
	UpstreamBytes int64 `json:"upstream_bytes"`
	UpstreamPulls int   `json:"upstream_pulls"`
	// WipedSeconds is the wiped burst's slowest node, WarmSeconds the warm
	// burst's on the same replicas, and Ratio the one over the other
	// (zero when the warm burst has no ok node).
	WipedSeconds float64 `json:"wiped_seconds"`
	WarmSeconds  float64 `json:"warm_seconds"`
	Ratio        float64 `json:"ratio"`
	// Pass: every node ok, no upstream byte and no pull in the wiped
	// burst.
	Pass bool `json:"pass"`
}

// restartChecks pairs the wiped and warm bursts of each burst size of the
// restart scenario in results.
func restartChecks(results []Result) []RestartCheck {
	var out []RestartCheck
	for _, w := range results {
		if w.Scenario != Restart || w.Phase != PhaseWiped {
			continue
		}
		c := RestartCheck{Nodes: w.Nodes, OK: w.OK, UpstreamBytes: w.UpstreamBytes, UpstreamPulls: w.UpstreamPulls,
			WipedSeconds: w.NodeSeconds.Max}
		c.Pass = c.OK == w.Nodes && c.UpstreamBytes == 0 && c.UpstreamPulls == 0
		for _, x := range results {
			if x.Scenario == Restart && x.Phase == PhaseWarm && x.Nodes == w.Nodes && x.NodeSeconds.N > 0 {
				c.WarmSeconds = x.NodeSeconds.Max
				c.Ratio = c.WipedSeconds / c.WarmSeconds
			}
		}
		out = append(out, c)
	}
	return out
}

// Check reports the restart checks that failed: a burst through replicas
// whose disks were wiped that did not get everything from the bucket.
func (r *Report) Check() error {
	var errs []error
	for _, c := range r.Restarts {
		if !c.Pass {
			errs = append(errs, fmt.Errorf("bench: restart ×%d: after the wipe %d/%d nodes ok, upstream sent %d bytes in %d pulls; want every node ok, 0 bytes and 0 pulls",
				c.Nodes, c.OK, c.Nodes, c.UpstreamBytes, c.UpstreamPulls))
		}
	}
	return errors.Join(errs...)
}

// writeRestarts writes the verdict of each burst size of the restart
// scenario, under the table.
func writeRestarts(w io.Writer, checks []RestartCheck) {
	if len(checks) == 0 {
		return
	}
	fmt.Fprintln(w, "\nrestart: cold through replicas and an empty bucket; wiped through new replicas with empty disks after every one stopped (uploads flushed), same bucket; warm through those again")
	for _, c := range checks {
		verdict := "OK"
		if !c.Pass {
			verdict = "FAIL"
		}
		ratio := "no warm burst to compare"
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("slowest node %.2fs against %.2fs warm: %.2fx", c.WipedSeconds, c.WarmSeconds, c.Ratio)
		}
		fmt.Fprintf(w, "  %s restart ×%d: after the wipe %d/%d nodes ok, upstream %d bytes, %d pulls; %s\n",
			verdict, c.Nodes, c.OK, c.Nodes, c.UpstreamBytes, c.UpstreamPulls, ratio)
	}
}
