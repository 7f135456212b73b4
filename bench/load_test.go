package bench

import (
	"bytes"
	"testing"

	"go.uber.org/goleak"
)

// leakOptions are TestMain's: fasthttp goroutines that outlive a stopped
// server by design.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// TestLoadQuick runs the load scenario with 100 connections and checks
// correctness only: no hit failed, the fill arrived whole, hits were
// measured in every window, and nothing of the run (clients, cacheyd, the
// fake upstream) is left running afterwards.
func TestLoadQuick(t *testing.T) {
	cfg := QuickLoadConfig()
	cfg.Dir = t.TempDir()
	var out bytes.Buffer
	rep, err := RunLoad(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("RunLoad: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if rep.Errors != 0 {
		t.Errorf("%d of %d requests failed: %v", rep.Errors, rep.Requests, rep.ErrorMsg)
	}
	if !rep.FillOK || rep.FillBytes != rep.FillSize || rep.FillSize < cfg.FillSize {
		t.Errorf("fill: ok=%v, %d bytes of %d, want at least %d", rep.FillOK, rep.FillBytes, rep.FillSize, cfg.FillSize)
	}
	var n int
	for _, w := range rep.Windows {
		n += w.Requests
		// Every client makes at least one request per phase only if the
		// phase outlasts a request; the before window always holds the
		// first request of every client.
		if w.Phase == phaseNames[phaseBefore] && w.Requests == 0 {
			t.Errorf("no %s hits before the fill", w.Kind)
		}
	}
	if int64(n) != rep.Requests-rep.Errors {
		t.Errorf("windows hold %d hits, want %d", n, rep.Requests-rep.Errors)
	}
	if rep.GoroutinesPeak < cfg.Conns {
		t.Errorf("peak of %d goroutines with %d clients running", rep.GoroutinesPeak, cfg.Conns)
	}
	goleak.VerifyNone(t, append(leakOptions, goleak.IgnoreCurrent())...)
}

func TestLoadConfigRejects(t *testing.T) {
	for _, c := range []LoadConfig{{Conns: -1}, {Conns: 20000}, {DiskEvery: -2}, {FillSize: -1}} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
