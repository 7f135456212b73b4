package bench

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// freePort is a loopback host:port nothing listens on at the moment.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestTargetRunReportsItsCost: measuring a running cacheyd (here one in
// this process, so that its PID is this one) reports, for each burst
// through it, its peak memory and the CPU time it used, and cold bursts
// are cold although its cache is never wiped.
func TestTargetRunReportsItsCost(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	upAddr, cdnAddr := freePort(t), freePort(t)
	_, upPort, _ := net.SplitHostPort(upAddr)
	_, cdnPort, _ := net.SplitHostPort(cdnAddr)
	base, stop, err := startCacheyd(t.Context(), CacheydConfig{
		Dir: t.TempDir(), Registry: "localhost:" + upPort, URL: "http://localhost:" + upPort, CDN: "localhost:" + cdnPort,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	cfg := QuickConfig()
	cfg.Latency, cfg.Bandwidth = time.Millisecond, 0
	cfg.Target, cfg.TargetPID, cfg.UpstreamAddr, cfg.UpstreamCDNAddr = base, os.Getpid(), upAddr, cdnAddr
	cfg.Nodes, cfg.Scenarios = []int{4}, []Scenario{Cold, Warm}
	rep, out := mustRun(t, cfg)
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want cold and warm", len(rep.Results))
	}
	for _, x := range rep.Results {
		if x.OK != 4 || x.PeakRSS <= 0 || x.CPUSeconds <= 0 {
			t.Errorf("%s: ok %d, peak RSS %d, CPU %.2fs; want 4 ok, both measured", x.Scenario, x.OK, x.PeakRSS, x.CPUSeconds)
		}
	}
	if cold := rep.Results[0]; cold.UpstreamBytes != rep.Setup.Bytes {
		t.Errorf("cold burst took %d bytes from upstream, want the set's %d", cold.UpstreamBytes, rep.Setup.Bytes)
	}
	if !strings.Contains(out, "CPU/GiB") {
		t.Error("the table has no CPU column")
	}
}
