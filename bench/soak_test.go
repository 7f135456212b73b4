package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestSoakQuick soaks for three seconds with faults at a high rate and
// checks correctness only: no fetch ever got wrong bytes, every pull
// finished (none failed after its retries), faults of every kind were
// injected and the cache directory was partly wiped, and nothing of the
// run is left running afterwards.
func TestSoakQuick(t *testing.T) {
	cfg := QuickSoakConfig()
	cfg.FaultRate = 0.2
	cfg.Dir = t.TempDir()
	var out bytes.Buffer
	rep, err := RunSoak(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("RunSoak: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if rep.DigestFailures != 0 {
		t.Errorf("%d digest failures", rep.DigestFailures)
	}
	if rep.Failed != 0 || rep.Completed == 0 {
		t.Errorf("%d pulls completed, %d failed: %v", rep.Completed, rep.Failed, rep.Failures)
	}
	for _, k := range faultKinds {
		if rep.Faults[k] == 0 {
			t.Errorf("no %s fault injected: %v", k, rep.Faults)
		}
	}
	if rep.Wiped == 0 {
		t.Error("nothing wiped from the cache directory")
	}
	if !hasMetric(rep.Metrics, "cacheyd_fills_total") || !hasMetric(rep.Metrics, "cacheyd_upstream_requests_total") {
		t.Errorf("metrics %v: want fills and upstream requests", rep.Metrics)
	}
	goleak.VerifyNone(t, append(leakOptions, goleak.IgnoreCurrent())...)
}

func hasMetric(lines []string, name string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, name) {
			return true
		}
	}
	return false
}

// TestWipeHalf removes every other file, directories left in place.
func TestWipeHalf(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a", "b", "sub/c", "sub/d", "sub/e"} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n := wipeHalf(dir); n != 3 {
		t.Errorf("wiped %d files, want 3", n)
	}
}
