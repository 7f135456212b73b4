package bench

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// LazySetup is what each node of the lazy scenarios reads.
type LazySetup struct {
	FooterBytes int64 `json:"footer_bytes"`
	WindowBytes int64 `json:"window_bytes"`
	Windows     int   `json:"windows"`
	// Layers counts the distinct layers one node reads, LayerBytes their
	// whole size; Bytes is what the node receives: the manifests and
	// configs whole and its reads of each layer.
	Layers     int   `json:"layers"`
	LayerBytes int64 `json:"layer_bytes"`
	Bytes      int64 `json:"bytes"`
}

// lazySetup describes the lazy reads of cat, or nil when no lazy scenario
// is to run.
func (r *runner) lazySetup() *LazySetup {
	if !slices.ContainsFunc(r.cfg.Scenarios, func(s Scenario) bool { return slices.Contains(LazyScenarios, s) }) {
		return nil
	}
	l := r.cfg.Lazy
	s := &LazySetup{FooterBytes: l.Footer, WindowBytes: l.Window, Windows: l.Windows, Bytes: l.lazyBytes(r.cat)}
	for _, o := range r.cat.objects {
		if o.content != nil {
			s.Layers++
			s.LayerBytes += o.size
		}
	}
	return s
}

// writeLazy writes the table of the lazy bursts.
func writeLazy(w io.Writer, s *LazySetup, results []Result) error {
	if s != nil {
		fmt.Fprintf(w, "lazy pulls: of each layer, the footer (bytes=-%d), the table of contents (%s before it), %d windows of %s; manifests and configs whole: %s per node of its %d layers' %s\n",
			s.FooterBytes, humanize.IBytes(uint64(s.WindowBytes)), s.Windows, humanize.IBytes(uint64(s.WindowBytes)),
			humanize.IBytes(uint64(s.Bytes)), s.Layers, humanize.IBytes(uint64(s.LayerBytes)))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tnodes\tok\tpulls\t429s\tupstream\tsettled\tserved\tfooter p50/max\t1st window p50/max\tall read p50/max\tpeak RSS\t")
	for _, x := range results {
		settled, rss := "-", "-"
		if x.UpstreamSettledBytes != nil {
			settled = humanize.IBytes(uint64(*x.UpstreamSettledBytes))
		}
		if x.PeakRSS > 0 {
			rss = humanize.IBytes(uint64(x.PeakRSS))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			x.Scenario, x.Nodes, x.OK, x.Nodes, x.UpstreamPulls, x.Upstream429,
			humanize.IBytes(uint64(x.UpstreamBytes)), settled, humanize.IBytes(uint64(x.BytesServed)),
			spread(x.FooterSeconds, ms), spread(x.FirstWindowSeconds, nil), spread(&x.NodeSeconds, nil), rss)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nlazy: upstream when the last node was done, settled once upstream was quiet (through cacheyd: the rest of each layer, cached whole); footer: each footer read, request to last byte; 1st window: burst start to a node's first footer; all read: to its last window")
	return nil
}

// spread is "p50/max" of p in seconds, or as unit writes them; "-" when
// p holds nothing.
func spread(p *Percentiles, unit func(float64) string) string {
	if p == nil || p.N == 0 {
		return "-"
	}
	if unit == nil {
		return secs(p.P50, p.N) + "/" + secs(p.Max, p.N)
	}
	return unit(p.P50) + "/" + unit(p.Max)
}
