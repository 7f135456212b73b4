package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	_ "gonum.org/v1/plot/vg/vgimg" // png
	_ "gonum.org/v1/plot/vg/vgsvg" // svg
)

// WriteChart draws two charts against burst size, one above the other:
// the time until nodes have every image (slowest node solid, median
// dashed) and the bytes upstream sent, one line per scenario. The file's
// extension (.svg or .png) chooses the format.
func (r *Report) WriteChart(path string) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	if format != "svg" && format != "png" {
		return fmt.Errorf("bench: chart %s: want a .svg or .png file", path)
	}
	times, bytes, err := r.plots()
	if err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	const w, h = 7 * vg.Inch, 8 * vg.Inch
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(12), PadY: vg.Points(16)}
	cs := plot.Align([][]*plot.Plot{{times}, {bytes}}, tiles, draw.New(c))
	times.Draw(cs[0][0])
	bytes.Draw(cs[1][0])
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: chart %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: chart %s: %w", path, err)
	}
	return nil
}

// plots builds the two charts of WriteChart.
func (r *Report) plots() (times, bytes *plot.Plot, err error) {
	var ns []int
	for _, x := range r.Results {
		if !containsInt(ns, x.Nodes) {
			ns = append(ns, x.Nodes)
		}
	}
	var ticks []plot.Tick
	for _, n := range ns {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	s := r.Setup
	bw := "no bandwidth cap"
	if s.Bandwidth > 0 {
		bw = fmt.Sprintf("%.3g MB/s per connection", float64(s.Bandwidth)/1e6)
	}
	note := fmt.Sprintf("%d images, %.0f MiB per node; upstream %.0f ms per request, %s", s.Images, float64(s.Bytes)/(1<<20), s.LatencySeconds*1000, bw)
	times = newPlot("Time until a node has every image\n"+note, "seconds", ticks)
	bytes = newPlot("Bytes upstream sent (labelled: bursts where nodes failed, and the 429s)", "MiB", ticks)
	var highest, most float64
	for i, sc := range Scenarios {
		var slowest, median, sent plotter.XYs
		var failed plotter.XYLabels
		for _, x := range r.Results {
			if x.Scenario != sc {
				continue
			}
			if x.NodeSeconds.N > 0 {
				slowest = append(slowest, plotter.XY{X: float64(x.Nodes), Y: x.NodeSeconds.Max})
				median = append(median, plotter.XY{X: float64(x.Nodes), Y: x.NodeSeconds.P50})
				highest = max(highest, x.NodeSeconds.Max)
			}
			mib := float64(x.UpstreamBytes) / (1 << 20)
			sent = append(sent, plotter.XY{X: float64(x.Nodes), Y: mib})
			most = max(most, mib)
			if x.OK < x.Nodes {
				failed.XYs = append(failed.XYs, plotter.XY{X: float64(x.Nodes), Y: mib})
				failed.Labels = append(failed.Labels, fmt.Sprintf(" %d of %d failed, %d× 429", x.Nodes-x.OK, x.Nodes, x.Upstream429))
			}
		}
		if len(sent) == 0 {
			continue
		}
		color := plotutil.Color(i)
		name := string(sc)
		if sc != Direct {
			name += " cacheyd"
		}
		if len(slowest) > 0 {
			if err := addLine(times, slowest, color, nil, name+" (slowest)"); err != nil {
				return nil, nil, err
			}
			if err := addLine(times, median, color, []vg.Length{vg.Points(4), vg.Points(3)}, name+" (median)"); err != nil {
				return nil, nil, err
			}
		}
		if err := addLine(bytes, sent, color, nil, name); err != nil {
			return nil, nil, err
		}
		if len(failed.XYs) > 0 {
			labels, err := plotter.NewLabels(failed)
			if err != nil {
				return nil, nil, err
			}
			for i := range labels.TextStyle {
				labels.TextStyle[i].Color = color
				labels.TextStyle[i].XAlign = draw.XRight
			}
			bytes.Add(labels)
		}
	}
	// Room above the lines for the legends.
	times.Y.Min, times.Y.Max = 0, highest*1.6
	bytes.Y.Min, bytes.Y.Max = 0, max(most, float64(s.Bytes)/(1<<20))*1.6
	if s.Bytes > 0 {
		// What one pull of the set is: the most a cache should send.
		var once plotter.XYs
		for _, n := range ns {
			once = append(once, plotter.XY{X: float64(n), Y: float64(s.Bytes) / (1 << 20)})
		}
		if err := addLine(bytes, once, plotutil.Color(len(Scenarios)), []vg.Length{vg.Points(1), vg.Points(3)}, "the image set, once"); err != nil {
			return nil, nil, err
		}
	}
	return times, bytes, nil
}

func newPlot(title, ylabel string, ticks []plot.Tick) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "nodes in the burst"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, xys plotter.XYs, color interface{ RGBA() (r, g, b, a uint32) }, dashes []vg.Length, name string) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, pts.Color = color, color
	l.Width = vg.Points(1.5)
	l.Dashes = dashes
	p.Add(l, pts)
	p.Legend.Add(name, l)
	return nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
