package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQuickRun runs the quick mode end to end, in-process, and checks what
// the harness claims, never how fast: every node of every burst got every
// object with its digest verified (except direct nodes refused by the pull
// limit); a cold burst costs upstream the image set's bytes once and one
// pull per distinct manifest, whatever the number of nodes; a warm burst
// costs upstream nothing.
func TestQuickRun(t *testing.T) {
	cfg := QuickConfig()
	cfg.Latency, cfg.Bandwidth = time.Millisecond, 0 // correctness only: no need to wait
	cfg.Dir = t.TempDir()
	cfg.Chart = filepath.Join(t.TempDir(), "chart.svg")
	rep, out := mustRun(t, cfg)
	s := rep.Setup
	if s.Images != 3 || s.Manifests != 5 || s.Blobs != 9 {
		// busybox: index, manifest, config, base; agent: index, manifest,
		// config, 2 own layers (base shared); tool: manifest, config, 3.
		t.Errorf("setup %+v: want 3 images, 5 manifests, 9 blobs", s)
	}
	if want := len(cfg.Nodes) * len(Scenarios); len(rep.Results) != want {
		t.Fatalf("%d results, want %d", len(rep.Results), want)
	}
	for _, r := range rep.Results {
		name := string(r.Scenario) + "×" + itoa(r.Nodes)
		pullsPerNode := s.Manifests
		switch r.Scenario {
		case Direct:
			wantPulls := min(r.Nodes*pullsPerNode, cfg.PullLimit)
			if r.UpstreamPulls != wantPulls {
				t.Errorf("%s: %d pulls counted, want %d", name, r.UpstreamPulls, wantPulls)
			}
			if r.Nodes*pullsPerNode <= cfg.PullLimit {
				if r.OK != r.Nodes || r.Upstream429 != 0 || r.UpstreamBytes != int64(r.Nodes)*s.Bytes {
					t.Errorf("%s: ok %d, 429s %d, upstream %d bytes; want all ok, none, %d", name, r.OK, r.Upstream429, r.UpstreamBytes, int64(r.Nodes)*s.Bytes)
				}
			} else if r.Upstream429 == 0 || r.OK == r.Nodes {
				t.Errorf("%s: %d nodes need %d pulls over a limit of %d, yet 429s %d and ok %d", name, r.Nodes, r.Nodes*pullsPerNode, cfg.PullLimit, r.Upstream429, r.OK)
			}
			if r.HitRatio != nil || r.FirstByteLagSeconds != nil {
				t.Errorf("%s: hit ratio or first-byte lag reported for a direct burst", name)
			}
		case Cold:
			if r.OK != r.Nodes || r.UpstreamBytes != s.Bytes || r.UpstreamPulls != s.Manifests || r.Upstream429 != 0 {
				t.Errorf("%s: ok %d, upstream %d bytes, %d pulls, %d 429s; want all ok, %d bytes (the set once), %d pulls (distinct manifests), no 429",
					name, r.OK, r.UpstreamBytes, r.UpstreamPulls, r.Upstream429, s.Bytes, s.Manifests)
			}
			if r.FirstByteLagSeconds == nil || r.FirstByteLagSeconds.N == 0 {
				t.Errorf("%s: no first-byte lag measured", name)
			}
		case Warm:
			if r.OK != r.Nodes || r.UpstreamBytes != 0 || r.UpstreamPulls != 0 {
				t.Errorf("%s: ok %d, upstream %d bytes, %d pulls; want all ok, nothing upstream", name, r.OK, r.UpstreamBytes, r.UpstreamPulls)
			}
			if r.HitRatio == nil || *r.HitRatio != 1 {
				t.Errorf("%s: hit ratio %v, want 1", name, r.HitRatio)
			}
		}
		if r.Scenario != Direct && r.BytesServed != int64(r.Nodes)*s.Bytes {
			t.Errorf("%s: served %d bytes, want %d", name, r.BytesServed, int64(r.Nodes)*s.Bytes)
		}
		if r.OK > 0 && (r.NodeSeconds.N != r.OK || r.NodeSeconds.P50 > r.NodeSeconds.Max) {
			t.Errorf("%s: node times %+v for %d ok nodes", name, r.NodeSeconds, r.OK)
		}
	}
	for _, want := range []string{"scenario", "direct", "cold", "warm", "429s"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	svg, err := os.ReadFile(cfg.Chart)
	if err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("chart: %v, %.40q", err, svg)
	}
	var back Report
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) {
		t.Errorf("JSON round trip: %v, %d results", err, len(back.Results))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
