package main

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/bench"
	"github.com/cacheyd/cacheyd/internal/s3test"
)

// parseBench parses a cacheyd-bench command line.
func parseBench(t *testing.T, args ...string) (*cli, bench.Config) {
	t.Helper()
	var c cli
	p, err := newParser(&c, kong.Exit(func(int) { t.Fatal("kong exited") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	cfg, err := c.config(&c.Flags)
	if err != nil {
		t.Fatal(err)
	}
	return &c, cfg
}

// Flags left out take the profile's numbers; flags given win, zero
// included.
func TestBenchFlags(t *testing.T) {
	type numbers struct {
		Nodes     []int
		Scenarios []bench.Scenario
		Bandwidth int64
		Latency   time.Duration
		PullLimit int
		Images    int
	}
	pick := func(c bench.Config) numbers {
		return numbers{c.Nodes, c.Scenarios, c.Bandwidth, c.Latency, c.PullLimit, len(c.Images)}
	}
	for _, c := range []struct {
		args []string
		want numbers
	}{
		{[]string{}, numbers{[]int{1, 4, 16, 64}, bench.Scenarios, 40_000_000, 50 * time.Millisecond, 100, 5}},
		{[]string{"--quick"}, numbers{[]int{1, 4, 16}, bench.Scenarios, 20_000_000, 5 * time.Millisecond, 20, 3}},
		{[]string{"--quick", "--latency", "0", "--bandwidth", "0", "--pull-limit", "0", "--nodes", "2,8", "--scenarios", "cold,warm"},
			numbers{[]int{2, 8}, []bench.Scenario{bench.Cold, bench.Warm}, 0, 0, 0, 3}},
		{[]string{"--bandwidth", "5MB", "--latency", "20ms", "--pull-limit", "7"},
			numbers{[]int{1, 4, 16, 64}, bench.Scenarios, 5_000_000, 20 * time.Millisecond, 7, 5}},
	} {
		_, cfg := parseBench(t, c.args...)
		if diff := cmp.Diff(c.want, pick(cfg)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", c.args, diff)
		}
	}
	_, cfg := parseBench(t, "--scenarios", "cold,lazy", "--lazy-footer", "32KiB", "--lazy-windows", "5")
	wantLazy := bench.LazyReads{Footer: 32 << 10, Window: 256 << 10, Windows: 5}
	if diff := cmp.Diff([]bench.Scenario{bench.Cold, bench.LazyDirect, bench.LazyCold}, cfg.Scenarios); diff != "" || cfg.Lazy != wantLazy {
		t.Errorf("lazy: scenarios (-want +got):\n%s; reads %+v, want %+v", diff, cfg.Lazy, wantLazy)
	}
	_, cfg = parseBench(t, "--upstream-addr", "127.0.0.1:5055", "--upstream-cdn-addr", "127.0.0.1:5056")
	if cfg.UpstreamAddr != "127.0.0.1:5055" || cfg.UpstreamCDNAddr != "127.0.0.1:5056" {
		t.Errorf("upstream addresses %q, %q", cfg.UpstreamAddr, cfg.UpstreamCDNAddr)
	}
}

// The in-process cacheyd of cacheyd-bench is cacheyd's own wiring: a
// quick run through it must hold the coalescing promise.
func TestBenchRunsTheRealWiring(t *testing.T) {
	_, cfg := parseBench(t, "--quick", "--no-progress", "--latency", "1ms", "--bandwidth", "0",
		"--nodes", "4", "--scenarios", "cold,warm", "--memory-bytes", "32MiB")
	cfg.Dir = t.TempDir()
	var out bytes.Buffer
	rep, err := bench.Run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	cold, warm := rep.Results[0], rep.Results[1]
	if cold.OK != 4 || cold.UpstreamBytes != rep.Setup.Bytes || cold.UpstreamPulls != rep.Setup.Manifests {
		t.Errorf("cold: %+v, want 4 ok, %d bytes, %d pulls upstream", cold, rep.Setup.Bytes, rep.Setup.Manifests)
	}
	if warm.OK != 4 || warm.UpstreamBytes != 0 {
		t.Errorf("warm: %+v, want 4 ok and nothing upstream", warm)
	}
}

// --alternate reaches cacheyd's own wiring as --alternate REGISTRY=URL:
// under a pull limit below the set's manifests, a cold burst costs the
// registry no counted pull.
func TestBenchAlternateReachesTheWiring(t *testing.T) {
	_, cfg := parseBench(t, "--quick", "--no-progress", "--latency", "1ms", "--bandwidth", "0",
		"--nodes", "4", "--scenarios", "cold", "--pull-limit", "3", "--alternate")
	if !cfg.Alternate {
		t.Fatal("--alternate not set in the config")
	}
	t.Setenv("CACHEYD_BENCH_ALTERNATE", "true")
	if _, env := parseBench(t, "--quick"); !env.Alternate {
		t.Error("CACHEYD_BENCH_ALTERNATE=true: no alternate in the config")
	}
	cfg.Dir = t.TempDir()
	var out bytes.Buffer
	rep, err := bench.Run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	cold := rep.Results[0]
	if cold.OK != 4 || cold.UpstreamPulls != 0 || cold.AlternateBytes != rep.Setup.Bytes {
		t.Errorf("cold: %+v, want 4 ok, no pull counted, %d bytes from the alternate\n%s", cold, rep.Setup.Bytes, out.String())
	}
}

// --s3 and its flags name the restart scenario's bucket; cacheyd's own
// bucket flags are not the benchmark's (every other burst starts cold).
func TestBenchBucketFlags(t *testing.T) {
	_, cfg := parseBench(t, "--scenarios", "restart", "--s3", "http://127.0.0.1:9000", "--s3-bucket", "b",
		"--s3-region", "eu-west-1", "--s3-access-key", "k", "--s3-secret-key", "s")
	want := bench.Bucket{Endpoint: "http://127.0.0.1:9000", Name: "b", Region: "eu-west-1", AccessKey: "k", SecretKey: "s"}
	if cfg.Bucket != want || !slices.Equal(cfg.Scenarios, []bench.Scenario{bench.Restart}) {
		t.Errorf("bucket %+v, scenarios %v; want %+v, restart", cfg.Bucket, cfg.Scenarios, want)
	}
	for _, flag := range []string{"--s3-endpoint", "--s3-prefix", "--s3-path-style"} {
		var c cli
		p, err := newParser(&c, kong.Exit(func(int) { t.Fatal("kong exited") }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse([]string{flag + "=x"}); err == nil {
			t.Errorf("cacheyd's %s accepted by cacheyd-bench", flag)
		}
	}
}

// The restart scenario through cacheyd's own wiring, with a versitygw the
// run starts: after every replica was stopped and its disk wiped, the new
// replicas get the set from the bucket, and upstream sees nothing.
func TestBenchRestartReachesTheWiring(t *testing.T) {
	bin := s3test.Bin(t)
	_, cfg := parseBench(t, "--quick", "--no-progress", "--latency", "1ms", "--bandwidth", "0",
		"--nodes", "4", "--replicas", "3", "--scenarios", "restart", "--s3-versitygw", bin)
	cfg.Dir = t.TempDir()
	var out bytes.Buffer
	rep, err := bench.Run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(rep.Results) != 3 {
		t.Fatalf("%d results, want 3\n%s", len(rep.Results), out.String())
	}
	cold, wiped := rep.Results[0], rep.Results[1]
	if cold.OK != 4 || cold.UpstreamBytes != rep.Setup.Bytes || wiped.OK != 4 || wiped.UpstreamBytes != 0 || wiped.UpstreamPulls != 0 || rep.Check() != nil {
		t.Errorf("cold %+v, wiped %+v, check %v: want 4 ok each, the set once upstream, then nothing\n%s", cold, wiped, rep.Check(), out.String())
	}
}
