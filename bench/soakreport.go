package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// SoakReport is what a soak measured.
type SoakReport struct {
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	// Pulls completed (every image, every digest verified, perhaps after
	// retries) and failed (still failing after the retries).
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	// Retried counts image pulls retried after a failure.
	Retried int64 `json:"retried"`
	// DigestFailures counts fetches whose bytes did not match their
	// digest: the upstream never sends wrong bytes, so each is cacheyd's.
	DigestFailures int64    `json:"digest_failures"`
	Failures       []string `json:"failures,omitempty"`
	// RetryReasons are why image pulls were retried, with counts.
	RetryReasons []string `json:"retry_reasons,omitempty"`
	// Faults counts the faults injected, by kind.
	Faults map[string]int64 `json:"faults"`
	// Generations is how many times the image set was seeded.
	Generations int `json:"generations"`
	// Wiped is how many files of the cache directory were removed in the
	// middle of the run.
	Wiped int `json:"wiped"`
	// Metrics are cacheyd's fill and upstream request counters at the end.
	Metrics []string `json:"metrics"`
	// Goroutines and RSS of the process with cacheyd running: at the
	// start (before the nodes) and at the end (the nodes done).
	GoroutinesStart int     `json:"goroutines_start"`
	GoroutinesEnd   int     `json:"goroutines_end"`
	RSSStart        int64   `json:"rss_start"`
	RSSEnd          int64   `json:"rss_end"`
	RSSPeak         int64   `json:"rss_peak"`
	Seconds         float64 `json:"seconds"`

	mu sync.Mutex // guards the counts above while the nodes pull
}

func (r *SoakReport) add(ok bool, retried int, digest int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.Completed++
	} else {
		r.Failed++
	}
	r.Retried += int64(retried)
	r.DigestFailures += int64(digest)
}

func (r *SoakReport) write(out io.Writer, cfg SoakConfig) error {
	var b []byte
	b = fmt.Appendf(b, "soak: %s, %d nodes, fault rate %.2f, %s %s/%s, go %s, %d CPUs\n", cfg.Duration, cfg.Nodes, cfg.FaultRate,
		r.Date.UTC().Format(time.RFC3339), r.Machine.OS, r.Machine.Arch, r.Machine.GoVersion, r.Machine.CPUs)
	b = fmt.Appendf(b, "pulls completed %d, failed %d, image pulls retried %d, digest failures %d\n",
		r.Completed, r.Failed, r.Retried, r.DigestFailures)
	for _, f := range r.Failures {
		b = fmt.Appendf(b, "  failure: %s\n", f)
	}
	for _, f := range r.RetryReasons {
		b = fmt.Appendf(b, "  retried: %s\n", f)
	}
	var fk []string
	for _, k := range faultKinds {
		fk = append(fk, k+"="+strconv.FormatInt(r.Faults[k], 10))
	}
	b = fmt.Appendf(b, "faults injected: %s; image set seeded %d times; cache files wiped mid-run: %d\n",
		strings.Join(fk, " "), r.Generations, r.Wiped)
	b = fmt.Appendf(b, "goroutines (process) start %d, end %d; RSS start %s, end %s, peak %s; %.1fs\n",
		r.GoroutinesStart, r.GoroutinesEnd, humanize.IBytes(uint64(r.RSSStart)), humanize.IBytes(uint64(r.RSSEnd)),
		humanize.IBytes(uint64(r.RSSPeak)), r.Seconds)
	for _, m := range r.Metrics {
		b = fmt.Appendf(b, "  %s\n", m)
	}
	_, err := out.Write(b)
	return err
}
