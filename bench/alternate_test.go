package bench

import (
	"strings"
	"testing"
	"time"
)

// TestQuickRunWithAnAlternate: with an alternate holding the set, a cold
// burst under a pull limit below the set's manifests costs the upstream no
// counted pull and no byte (tags are resolved by HEAD) and the alternate
// the set once, and every node gets every image; without the alternate the
// same burst runs into the limit, and no node, each needing all 5
// manifests, gets every image.
func TestQuickRunWithAnAlternate(t *testing.T) {
	for _, c := range []struct {
		name      string
		alternate bool
	}{
		{"alternate", true},
		{"registry only", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := QuickConfig()
			cfg.Latency, cfg.Bandwidth = time.Millisecond, 0 // correctness only
			cfg.Dir, cfg.Alternate = t.TempDir(), c.alternate
			cfg.Nodes, cfg.Scenarios = []int{8}, []Scenario{Cold}
			cfg.PullLimit = 3 // below the quick set's 5 manifests
			rep, out := mustRun(t, cfg)
			s := rep.Setup
			if s.Alternate != c.alternate || len(rep.Results) != 1 {
				t.Fatalf("setup %+v with %d results: want alternate %v, 1 result", s, len(rep.Results), c.alternate)
			}
			cold := rep.Results[0]
			if !c.alternate {
				if cold.OK != 0 || cold.UpstreamPulls == 0 || cold.AlternateBytes != 0 {
					t.Errorf("cold without an alternate: ok %d of %d, %d pulls, alternate %d bytes; want the limit to fail every node, pulls counted, nothing from an alternate",
						cold.OK, cold.Nodes, cold.UpstreamPulls, cold.AlternateBytes)
				}
				if strings.Contains(out, "alternate") {
					t.Errorf("a report without an alternate speaks of one:\n%s", out)
				}
				return
			}
			if cold.OK != 8 || cold.UpstreamPulls != 0 || cold.Upstream429 != 0 || cold.UpstreamBytes != 0 || cold.AlternateBytes != s.Bytes {
				t.Errorf("cold: ok %d, %d pulls, %d 429s, upstream %d bytes, alternate %d bytes; want 8 ok, no pull, no 429, nothing upstream, %d bytes (the set once) from the alternate",
					cold.OK, cold.UpstreamPulls, cold.Upstream429, cold.UpstreamBytes, cold.AlternateBytes, s.Bytes)
			}
			if cold.FirstByteLagSeconds == nil || cold.FirstByteLagSeconds.N == 0 {
				t.Errorf("cold: no first-byte lag measured against the alternate's first bytes")
			}
			for _, want := range []string{"alternate: a second registry", "upstream  alternate  served", "alternate: manifest and blob bytes"} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestAnAlternateWithATargetIsRefused(t *testing.T) {
	cfg := QuickConfig()
	cfg.Alternate, cfg.Target = true, "http://127.0.0.1:30123"
	if _, err := cfg.withDefaults(); err == nil {
		t.Error("an alternate with a target accepted")
	}
}
