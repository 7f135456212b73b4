package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/oci"
)

// A layer's reads: the footer, the table of contents before it, file
// windows in what is left, each cut to fit; the same for the same digest.
func TestLazyPlan(t *testing.T) {
	l := LazyReads{}.withDefaults()
	d := oci.FromBytes([]byte("layer"))
	const k = 1 << 10
	if diff := cmp.Diff([]span{{off: 0, n: 4 * k, suffix: true}}, l.plan(d, 4*k), cmp.AllowUnexported(span{})); diff != "" {
		t.Errorf("4 KiB layer (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]span{{off: 36 * k, n: 64 * k, suffix: true}, {off: 0, n: 36 * k}}, l.plan(d, 100*k), cmp.AllowUnexported(span{})); diff != "" {
		t.Errorf("100 KiB layer (-want +got):\n%s", diff)
	}
	const size = 8 << 20
	p := l.plan(d, size)
	if len(p) != 5 || p[0] != (span{off: size - 64*k, n: 64 * k, suffix: true}) || p[1] != (span{off: size - 320*k, n: 256 * k}) {
		t.Fatalf("8 MiB layer: %+v, want the footer, the table of contents and 3 windows", p)
	}
	for _, s := range p[2:] {
		if s.n != 256*k || s.off < 0 || s.off+s.n > size-320*k || s.suffix {
			t.Errorf("file window %+v: not 256 KiB before the table of contents", s)
		}
	}
	if diff := cmp.Diff(p, l.plan(d, size), cmp.AllowUnexported(span{})); diff != "" {
		t.Errorf("plan of the same layer changed (-first +second):\n%s", diff)
	}
	if other := l.plan(oci.FromBytes([]byte("another")), size); other[2] == p[2] {
		t.Errorf("two layers' first file windows at the same offset %d", p[2].off)
	}
}

// TestLazyQuick runs both lazy scenarios on the quick set and checks what
// they claim, never how fast: every node read every window with the
// layer's bytes; straight from upstream each node costs exactly its reads;
// through cacheyd upstream counts one pull per distinct manifest and, once
// quiet, has sent the set exactly once (each layer cached whole).
func TestLazyQuick(t *testing.T) {
	cfg := QuickConfig()
	cfg.Nodes, cfg.Scenarios = []int{1, 4}, LazyScenarios
	cfg.Latency, cfg.Bandwidth = time.Millisecond, 0
	cfg.Dir = t.TempDir()
	rep, out := mustRun(t, cfg)
	s := rep.Setup
	if s.Lazy == nil || s.Lazy.Layers != 6 || s.Lazy.Bytes <= 0 || s.Lazy.Bytes >= s.Bytes {
		t.Fatalf("lazy setup %+v: want 6 layers and fewer bytes than the set's %d", s.Lazy, s.Bytes)
	}
	if len(rep.Results) != 4 {
		t.Fatalf("%d results, want 4", len(rep.Results))
	}
	for _, r := range rep.Results {
		name := string(r.Scenario) + "×" + itoa(r.Nodes)
		per := int64(r.Nodes) * s.Lazy.Bytes
		if r.OK != r.Nodes || r.BytesServed != per || len(r.Failures) > 0 {
			t.Errorf("%s: ok %d, served %d bytes, failures %q; want all ok, %d bytes", name, r.OK, r.BytesServed, r.Failures, per)
		}
		f := r.FirstWindowSeconds
		if f == nil || f.N != r.OK || f.P50 > r.NodeSeconds.P50 || f.Max > r.NodeSeconds.Max {
			t.Errorf("%s: first window %+v, all read %+v", name, f, r.NodeSeconds)
		}
		if ft := r.FooterSeconds; ft == nil || ft.N != r.OK*s.Lazy.Layers || ft.Max > r.NodeSeconds.Max {
			t.Errorf("%s: footers %+v, want one per layer of each ok node", name, ft)
		}
		switch r.Scenario {
		case LazyDirect:
			if r.UpstreamBytes != per || r.UpstreamPulls != r.Nodes*s.Manifests || r.UpstreamSettledBytes != nil {
				t.Errorf("%s: upstream %d bytes, %d pulls, settled %v; want %d, %d, none", name, r.UpstreamBytes, r.UpstreamPulls, r.UpstreamSettledBytes, per, r.Nodes*s.Manifests)
			}
		case LazyCold:
			if r.UpstreamSettledBytes == nil || *r.UpstreamSettledBytes != s.Bytes || r.UpstreamPulls != s.Manifests {
				t.Errorf("%s: settled %v bytes upstream, %d pulls; want %d (the set once), %d", name, r.UpstreamSettledBytes, r.UpstreamPulls, s.Bytes, s.Manifests)
			}
		}
	}
	for _, want := range []string{"lazy-direct", "lazy-cold", "1st window", "bytes=-65536"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
}
