package bench

import (
	"testing"
	"time"
)

// TestQuickRunWithReplicas: three replicas behind the balancer cost a cold
// burst the image set's bytes once and one pull per distinct manifest,
// like one cacheyd, and a warm burst nothing.
func TestQuickRunWithReplicas(t *testing.T) {
	for _, b := range []Balance{BalanceNode, BalanceConnection} {
		t.Run(string(b), func(t *testing.T) { quickRunWithReplicas(t, b) })
	}
}

func quickRunWithReplicas(t *testing.T, balance Balance) {
	cfg := QuickConfig()
	cfg.Balance = balance
	cfg.Latency, cfg.Bandwidth = time.Millisecond, 0 // correctness only
	cfg.Dir, cfg.Replicas = t.TempDir(), 3
	cfg.Nodes, cfg.Scenarios = []int{8}, []Scenario{Cold, Warm}
	rep, _ := mustRun(t, cfg)
	s := rep.Setup
	if s.Replicas != 3 || len(rep.Results) != 2 {
		t.Fatalf("setup %+v with %d results: want 3 replicas, 2 results", s, len(rep.Results))
	}
	cold, warm := rep.Results[0], rep.Results[1]
	if cold.OK != 8 || cold.UpstreamBytes != s.Bytes || cold.UpstreamPulls != s.Manifests || cold.Upstream429 != 0 {
		t.Errorf("cold: ok %d, upstream %d bytes, %d pulls, %d 429s; want 8 ok, %d bytes, %d pulls, none",
			cold.OK, cold.UpstreamBytes, cold.UpstreamPulls, cold.Upstream429, s.Bytes, s.Manifests)
	}
	if warm.OK != 8 || warm.UpstreamBytes != 0 || warm.UpstreamPulls != 0 {
		t.Errorf("warm: ok %d, upstream %d bytes, %d pulls; want 8 ok and nothing upstream", warm.OK, warm.UpstreamBytes, warm.UpstreamPulls)
	}
}

func TestReplicasWithATargetAreRefused(t *testing.T) {
	cfg := QuickConfig()
	cfg.Replicas, cfg.Target = 3, "http://127.0.0.1:30123"
	if _, err := cfg.withDefaults(); err == nil {
		t.Error("replicas with a target accepted")
	}
}
