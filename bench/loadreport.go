package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"
)

// Phases of a load run, in order.
const (
	phaseBefore = iota // before the fill starts
	phaseDuring        // while the fill is in flight
	phaseAfter         // once it has finished
	phases
)

var phaseNames = [phases]string{"before fill", "during fill", "after fill"}

// Hit kinds of a load run.
const (
	hitMemory = iota // a small manifest, held in memory
	hitDisk          // a blob larger than the memory tier's largest object
	hitKinds
)

var hitNames = [hitKinds]string{"memory", "disk"}

// LoadReport is what a load run measured.
type LoadReport struct {
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	Conns   int       `json:"conns"`
	// Requests and Errors count every hit; an error is a transport error,
	// a status other than 200, or a body of the wrong length or digest.
	Requests int64    `json:"requests"`
	Errors   int64    `json:"errors"`
	ErrorMsg []string `json:"error_examples,omitempty"`
	// Windows are the hits by phase and kind.
	Windows []LoadWindow `json:"windows"`
	// FillSeconds is how long the cold fill took; FillOK whether its body
	// was complete with the right digest.
	FillSeconds float64 `json:"fill_seconds"`
	FillOK      bool    `json:"fill_ok"`
	FillBytes   int64   `json:"fill_bytes"`
	FillSize    int64   `json:"fill_size"` // the blob's size

	// Goroutines of the whole process (cacheyd and the clients): before
	// cacheyd starts, with cacheyd idle, the peak, and once the clients
	// have closed their connections (cacheyd still running).
	GoroutinesBase  int `json:"goroutines_base"`
	GoroutinesIdle  int `json:"goroutines_idle"`
	GoroutinesPeak  int `json:"goroutines_peak"`
	GoroutinesAfter int `json:"goroutines_after"`
	// GoroutinesSettled is the count once it fell back near the idle one,
	// SettleSeconds after the clients closed (or when LoadConfig.Settle
	// ran out); zero without a wait.
	GoroutinesSettled int     `json:"goroutines_settled"`
	SettleSeconds     float64 `json:"settle_seconds"`
	// PeakRSS is the process's highest resident memory during the run.
	PeakRSS int64   `json:"peak_rss"`
	Seconds float64 `json:"seconds"`
}

// LoadWindow is the hits of one kind in one phase.
type LoadWindow struct {
	Phase    string  `json:"phase"`
	Kind     string  `json:"kind"`
	Requests int     `json:"requests"`
	P50      float64 `json:"p50_seconds"`
	P99      float64 `json:"p99_seconds"`
	Max      float64 `json:"max_seconds"`
}

func (r *LoadReport) write(out io.Writer, tg *loadTarget) error {
	ms := func(s float64) string { return fmt.Sprintf("%.2fms", s*1000) }
	var b []byte
	b = fmt.Appendf(b, "load: %d connections on loopback, %s %s/%s, go %s, %s\n", r.Conns,
		r.Date.UTC().Format(time.RFC3339), r.Machine.OS, r.Machine.Arch, r.Machine.GoVersion,
		fmt.Sprintf("%d CPUs", r.Machine.CPUs))
	b = fmt.Appendf(b, "memory hit: manifest of %s; disk hit: blob of %s; cold fill: blob of %s\n",
		humanize.IBytes(uint64(tg.manifest.size)), humanize.IBytes(uint64(tg.disk.size)), humanize.IBytes(uint64(tg.fill.size)))
	b = fmt.Appendf(b, "requests %d, errors %d; fill %s in %.1fs, ok=%v\n", r.Requests, r.Errors,
		humanize.IBytes(uint64(r.FillBytes)), r.FillSeconds, r.FillOK)
	for _, m := range r.ErrorMsg {
		b = fmt.Appendf(b, "  error: %s\n", m)
	}
	b = fmt.Appendf(b, "%-12s %-7s %9s %10s %10s %10s\n", "window", "hit", "requests", "p50", "p99", "max")
	for _, w := range r.Windows {
		b = fmt.Appendf(b, "%-12s %-7s %9d %10s %10s %10s\n", w.Phase, w.Kind, w.Requests, ms(w.P50), ms(w.P99), ms(w.Max))
	}
	b = fmt.Appendf(b, "goroutines (process: cacheyd and clients): %d before cacheyd, %d cacheyd idle, %d peak, %d after the clients closed\n",
		r.GoroutinesBase, r.GoroutinesIdle, r.GoroutinesPeak, r.GoroutinesAfter)
	if r.GoroutinesSettled > 0 {
		b = fmt.Appendf(b, "goroutines %.1fs after the clients closed: %d\n", r.SettleSeconds, r.GoroutinesSettled)
	}
	b = fmt.Appendf(b, "peak RSS (process): %s; %.1fs\n", humanize.IBytes(uint64(r.PeakRSS)), r.Seconds)
	_, err := out.Write(b)
	return err
}

// quantile returns the q-quantile of sorted v (nearest rank), 0 if empty.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(q*float64(len(v))+0.999999) - 1
	return v[min(max(i, 0), len(v)-1)]
}
