package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

// Report is the outcome of a run.
type Report struct {
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	Setup   Setup     `json:"setup"`
	// Results has one entry per burst, in the order they ran.
	Results []Result `json:"results"`
	// Restarts has the verdict of the restart scenario for each burst
	// size it ran for (Check).
	Restarts []RestartCheck `json:"restarts,omitempty"`
	// Seconds is the whole run's wall time, seeding included.
	Seconds float64 `json:"seconds"`
}

// Machine says where the run happened.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
}

// Setup is what was measured: the image set and the upstream.
type Setup struct {
	Images int `json:"images"`
	// Manifests and Blobs count the distinct objects one node fetches;
	// Bytes is their size: what a node downloads, and what upstream must
	// send once through a cache.
	Manifests int   `json:"manifests"`
	Blobs     int   `json:"blobs"`
	Bytes     int64 `json:"bytes"`
	// LargestBlob is the largest of them, in bytes.
	LargestBlob int64 `json:"largest_blob"`
	// StoredBytes is everything upstream holds for the set (all platforms).
	StoredBytes    int64   `json:"stored_bytes"`
	Platform       string  `json:"platform"`
	Bandwidth      int64   `json:"bandwidth_bytes_per_second"`
	LatencySeconds float64 `json:"latency_seconds"`
	PullLimit      int     `json:"pull_limit"`
	Parallel       int     `json:"parallel"`
	// Target is the cacheyd measured; empty when it ran in-process.
	Target string `json:"target,omitempty"`
	// Replicas is how many in-process replicas shared each burst, and
	// Balance how the nodes reached them.
	Replicas int     `json:"replicas"`
	Balance  Balance `json:"balance,omitempty"`
	// Alternate reports that a second registry holding the set stood
	// beside the upstream as its alternate (Config.Alternate).
	Alternate bool `json:"alternate,omitempty"`
	// Bucket names the restart scenario's S3 store; empty when it did not
	// run.
	Bucket string `json:"bucket,omitempty"`
	// Lazy is what the nodes of the lazy scenarios read; nil when none
	// ran.
	Lazy *LazySetup `json:"lazy,omitempty"`
}

// Result is one burst: Nodes nodes pulling the set at once.
type Result struct {
	Scenario Scenario `json:"scenario"`
	// Phase is which burst of the restart scenario this is (PhaseCold,
	// PhaseWiped, PhaseWarm); empty for the other scenarios.
	Phase string `json:"phase,omitempty"`
	Nodes int    `json:"nodes"`
	// OK counts nodes that fetched every object of the set exactly once
	// with its digest verified; Failures holds the first few distinct
	// reasons the others did not, each with how many nodes it stopped.
	OK       int      `json:"ok"`
	Failures []string `json:"failures,omitempty"`

	// UpstreamPulls is what Docker Hub would count (manifest GETs);
	// Upstream429 the manifest GETs it refused for the pull limit.
	UpstreamPulls int `json:"upstream_pulls"`
	Upstream429   int `json:"upstream_429"`
	// UpstreamRequests counts every request upstream saw, tokens and
	// redirects included; UpstreamBytes the manifest and blob bytes it
	// sent.
	UpstreamRequests int   `json:"upstream_requests"`
	UpstreamBytes    int64 `json:"upstream_bytes"`
	// AlternateBytes is the manifest and blob bytes the upstream's
	// alternate sent (Config.Alternate); UpstreamBytes stays the
	// upstream's own.
	AlternateBytes int64 `json:"alternate_bytes,omitempty"`
	// BytesServed is what the nodes received, verified or not.
	BytesServed int64 `json:"bytes_served"`
	// HitRatio is 1 - (UpstreamBytes+AlternateBytes)/BytesServed through
	// cacheyd; nil for direct bursts.
	HitRatio *float64 `json:"hit_ratio,omitempty"`

	// NodeSeconds is the time from the burst's start to each OK node
	// having every image, over the OK nodes.
	NodeSeconds Percentiles `json:"node_seconds"`
	// FirstWindowSeconds is, for the lazy scenarios, the time from the
	// burst's start to each OK node having read its first footer; their
	// NodeSeconds is until it had read every window of every layer.
	FirstWindowSeconds *Percentiles `json:"first_window_seconds,omitempty"`
	// FooterSeconds is, for the lazy scenarios, how long each footer read
	// of the OK nodes took, from its request to its last byte.
	FooterSeconds *Percentiles `json:"footer_seconds,omitempty"`
	// UpstreamSettledBytes is, for lazy-cold, what upstream had sent once
	// it went quiet after the nodes were done: UpstreamBytes and the rest
	// of each layer, which cacheyd fetches to cache it whole.
	UpstreamSettledBytes *int64 `json:"upstream_settled_bytes,omitempty"`
	// FirstByteLagSeconds is, over the fetches through a cold cacheyd that
	// were waiting when upstream sent the object's first byte, how long
	// after that the node's first byte came: near zero when cacheyd
	// streams, the whole transfer when it stores and then forwards. Nil
	// for direct and warm bursts.
	FirstByteLagSeconds *Percentiles `json:"first_byte_lag_seconds,omitempty"`
	// PeakRSS is the highest resident memory of Config.TargetPID seen
	// during the burst, in bytes; zero when not sampled.
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
	// CPUSeconds is the CPU time (user and system) Config.TargetPID used
	// during the burst; zero when not measured. Over BytesServed it is the
	// cost of a byte served, comparable between a cold and a warm burst.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// Seconds is the burst's wall time.
	Seconds float64 `json:"seconds"`
}

// Percentiles summarise a set of durations in seconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// percentiles summarises v (nearest rank); all zero when v is empty.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return Percentiles{P50: rank(0.50), P95: rank(0.95), Max: s[len(s)-1], N: len(s)}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as a table a person reads.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Setup
	where := "in-process cacheyd"
	if s.Replicas > 1 {
		where = fmt.Sprintf("%d in-process cacheyd replicas, nodes spread over them by %s", s.Replicas, s.Balance)
	}
	if s.Target != "" {
		where = "cacheyd at " + s.Target
	}
	limit := "no pull limit"
	if s.PullLimit > 0 {
		limit = fmt.Sprintf("pull limit %d per burst", s.PullLimit)
	}
	bw := "no bandwidth cap"
	if s.Bandwidth > 0 {
		bw = humanize.Bytes(uint64(s.Bandwidth)) + "/s per connection"
	}
	fmt.Fprintf(w, "cacheyd-bench, %s, %s/%s %d CPUs, %s\n", r.Date.Format("2006-01-02 15:04"), r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.GoVersion)
	fmt.Fprintf(w, "image set: %d images, %d manifests + %d blobs = %s per %s node (largest blob %s; upstream stores %s)\n",
		s.Images, s.Manifests, s.Blobs, humanize.IBytes(uint64(s.Bytes)), s.Platform, humanize.IBytes(uint64(s.LargestBlob)), humanize.IBytes(uint64(s.StoredBytes)))
	fmt.Fprintf(w, "upstream: %s latency per request, %s, %s; nodes: %d downloads at once; %s\n\n",
		time.Duration(s.LatencySeconds*float64(time.Second)), bw, limit, s.Parallel, where)
	if s.Bucket != "" {
		fmt.Fprintf(w, "bucket: %s, named by the replicas of the restart scenario\n\n", s.Bucket)
	}
	if s.Alternate {
		fmt.Fprintf(w, "alternate: a second registry holding the set, named to cacheyd with --alternate; no pull limit, the upstream's latency and bandwidth\n\n")
	}

	var pulls, lazy []Result
	for _, x := range r.Results {
		if x.FirstWindowSeconds != nil {
			lazy = append(lazy, x)
		} else {
			pulls = append(pulls, x)
		}
	}
	if len(pulls) > 0 {
		if err := writePulls(w, pulls, s.Alternate); err != nil {
			return err
		}
	}
	if len(lazy) > 0 {
		if len(pulls) > 0 {
			fmt.Fprintln(w)
		}
		if err := writeLazy(w, s.Lazy, lazy); err != nil {
			return err
		}
	}
	writeRestarts(w, r.Restarts)
	var notes []string
	for _, x := range r.Results {
		for _, f := range x.Failures {
			notes = append(notes, fmt.Sprintf("%s ×%d: %s", x.label(), x.Nodes, f))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnodes that did not get every image:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	alt := ""
	if s.Alternate {
		alt = "; alternate: manifest and blob bytes the alternate sent"
	}
	fmt.Fprintf(w, "\npulls: manifest GETs Docker Hub counts; upstream: manifest and blob bytes it sent%s; times: burst start to a node having every image (OK nodes); run took %s\n",
		alt, (time.Duration(r.Seconds * float64(time.Second))).Round(time.Second))
	return nil
}

// writePulls writes the table of the bursts of whole pulls, with a column
// of the alternate's bytes when alt.
func writePulls(w io.Writer, results []Result, alt bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	altHead := ""
	if alt {
		altHead = "alternate\t"
	}
	fmt.Fprintln(tw, "scenario\tnodes\tok\tpulls\t429s\tupstream\t"+altHead+"served\thit\tp50\tp95\tmax\t1st-byte lag p50/max\tpeak RSS\tCPU/GiB\t")
	for _, x := range results {
		hit, lag, rss, cpu := "-", "-", "-", "-"
		if x.HitRatio != nil {
			hit = fmt.Sprintf("%.3f", *x.HitRatio)
		}
		if x.FirstByteLagSeconds != nil && x.FirstByteLagSeconds.N > 0 {
			lag = ms(x.FirstByteLagSeconds.P50) + "/" + ms(x.FirstByteLagSeconds.Max)
		}
		if x.PeakRSS > 0 {
			rss = humanize.IBytes(uint64(x.PeakRSS))
		}
		if x.CPUSeconds > 0 && x.BytesServed > 0 {
			cpu = fmt.Sprintf("%.2fs", x.CPUSeconds/(float64(x.BytesServed)/(1<<30)))
		}
		t := x.NodeSeconds
		upstream := humanize.IBytes(uint64(x.UpstreamBytes))
		if alt {
			upstream += "\t" + humanize.IBytes(uint64(x.AlternateBytes))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			x.label(), x.Nodes, x.OK, x.Nodes, x.UpstreamPulls, x.Upstream429,
			upstream, humanize.IBytes(uint64(x.BytesServed)), hit,
			secs(t.P50, t.N), secs(t.P95, t.N), secs(t.Max, t.N), lag, rss, cpu)
	}
	return tw.Flush()
}

// label names the burst in the table: its scenario, and its phase if any
// ("restart/wiped").
func (x Result) label() string {
	if x.Phase != "" {
		return string(x.Scenario) + "/" + x.Phase
	}
	return string(x.Scenario)
}

func secs(s float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", s)
}

func ms(s float64) string {
	return fmt.Sprintf("%.1fms", s*1000)
}

// shorten keeps an error message to one readable line.
func shorten(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
