package server

import (
	"bytes"
	"html/template"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
)

// StatusInfo is what the status page shows beside the live figures. The
// zero value shows no version and no budgets.
type StatusInfo struct {
	// Version is cacheyd's version.
	Version string
	// MemoryBytes and DiskBytes are the tiers' budgets in bytes; zero means
	// no budget (memory tier off, disk unlimited).
	MemoryBytes, DiskBytes int64
	// Member is this replica's address among the cluster's members, and
	// Parent the cacheyd it asks before upstream; empty when it has none.
	Member, Parent string
	// Budgets returns each registry's pull budget as it last stated it,
	// read at every view of the page. Nil shows none.
	Budgets func() []PullBudget
	// Bucket names the object store behind the tiers (s3://bucket/prefix
	// and its endpoint); empty when there is none.
	Bucket string
}

// PullBudget is a registry's pull budget as the status page shows it.
type PullBudget struct {
	Registry         string
	Limit, Remaining int64
	// Window is the budget's window; zero when the registry did not say.
	Window time.Duration
	// Seen is when the registry last stated it.
	Seen time.Time
	// HeldUntil is when manifest GETs go to the registry again; zero when
	// they go now.
	HeldUntil time.Time
	// SeenBy is the member that read it from the registry, by its
	// address, when this replica heard it from that member (the owner of
	// a manifest it asked for); empty when this replica read it itself.
	SeenBy string
}

// budgetRow is a PullBudget as the page shows it: ages and waits from the
// moment the page is made.
type budgetRow struct {
	PullBudget
	Percent      float64 // remaining of the limit
	Ago, HeldFor time.Duration
}

func budgetRows(bs []PullBudget, now time.Time) []budgetRow {
	rows := make([]budgetRow, 0, len(bs))
	for _, b := range bs {
		r := budgetRow{PullBudget: b, Ago: now.Sub(b.Seen).Round(time.Second)}
		if b.Limit > 0 {
			r.Percent = 100 * float64(b.Remaining) / float64(b.Limit)
		}
		if b.HeldUntil.After(now) {
			r.HeldFor = b.HeldUntil.Sub(now).Round(time.Second)
		}
		rows = append(rows, r)
	}
	return rows
}

// statusFigures are the live figures of the status page, read from the same
// collectors /metrics serves, all since cacheyd started.
type statusFigures struct {
	Info     StatusInfo
	Ready    bool
	Uptime   time.Duration
	Registry string

	Hits, Joins, Misses  float64
	HitRatio, PullsSaved float64 // in percent

	ServedBySource  []labelled
	Served, Fetched float64
	FetchedByReg    []labelled
	Saved           float64

	FillsInFlight, FillsOK, FillsFailed float64
	TagLookups                          []labelled
	Stale, Uncached                     float64

	MemoryUsed, DiskUsed       float64
	MemoryPercent, DiskPercent float64
	Evictions                  float64
	IndexObjects, IndexLoading float64 // the disk tier's index: objects, and 1 while it loads

	// The cluster: each member with 1 while it is skipped, what requests
	// to peers and the parent came to, why this replica fetched itself,
	// and how many requests it answered for peers.
	Members        []labelled
	ClusterAsked   []labelled
	ClusterDirect  []labelled
	ServedToPeers  float64
	FromPeersBytes float64

	// Budgets are the registries' pull budgets.
	Budgets []budgetRow

	// The object store: reads by result, uploads by result, and bytes
	// each way.
	BucketReads, BucketUploads []labelled
	BucketRead, BucketWritten  float64
}

type labelled struct {
	Label string
	Value float64
}

// gatherFigures reads the figures from the Gatherer.
func (s *Server) gatherFigures() (statusFigures, error) {
	f := statusFigures{Info: s.cfg.Status, Ready: s.ready.Load(), Uptime: time.Since(s.started).Round(time.Second), Registry: s.cfg.DefaultRegistry}
	if s.cfg.Status.Budgets != nil {
		f.Budgets = budgetRows(s.cfg.Status.Budgets(), time.Now())
	}
	if s.cfg.Gatherer == nil {
		return f, nil
	}
	mfs, err := s.cfg.Gatherer.Gather()
	if err != nil {
		return f, err
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	sum := func(name string) float64 {
		total := 0.0
		if mf := byName[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				total += value(m)
			}
		}
		return total
	}
	by := func(name, label string) []labelled {
		acc := map[string]float64{}
		if mf := byName[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label {
						acc[lp.GetValue()] += value(m)
					}
				}
			}
		}
		out := make([]labelled, 0, len(acc))
		for k, v := range acc {
			out = append(out, labelled{k, v})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
		return out
	}
	f.Hits, f.Joins, f.Misses = sum("cacheyd_cache_hits_total"), sum("cacheyd_fill_joins_total"), sum("cacheyd_cache_misses_total")
	f.ClusterAsked = by("cacheyd_cluster_requests_total", "outcome")
	if all := f.Hits + f.Joins + f.Misses; all > 0 {
		f.HitRatio = 100 * f.Hits / all
		f.PullsSaved = 100 * (f.Hits + f.Joins + min(peerAnswered(f.ClusterAsked), f.Misses)) / all
	}
	f.ServedBySource, f.Served = by("cacheyd_served_bytes_total", "source"), sum("cacheyd_served_bytes_total")
	f.FetchedByReg, f.Fetched = by("cacheyd_upstream_bytes_total", "registry"), sum("cacheyd_upstream_bytes_total")
	f.Saved = max(f.Served-f.Fetched, 0)
	f.FillsInFlight = sum("cacheyd_fills_in_flight")
	for _, l := range by("cacheyd_fills_total", "outcome") {
		switch l.Label {
		case "ok":
			f.FillsOK = l.Value
		case "error":
			f.FillsFailed = l.Value
		}
	}
	f.TagLookups = by("cacheyd_tag_lookups_total", "outcome")
	for _, l := range f.TagLookups {
		if l.Label == "stale" {
			f.Stale = l.Value
		}
	}
	f.Uncached = sum("cacheyd_uncached_total")
	f.MemoryUsed, f.DiskUsed = sum("cacheyd_memory_tier_bytes"), sum("cacheyd_disk_tier_bytes")
	if f.Info.MemoryBytes > 0 {
		f.MemoryPercent = 100 * f.MemoryUsed / float64(f.Info.MemoryBytes)
	}
	if f.Info.DiskBytes > 0 {
		f.DiskPercent = 100 * f.DiskUsed / float64(f.Info.DiskBytes)
	}
	f.Evictions = sum("cacheyd_disk_evictions_total")
	f.IndexObjects, f.IndexLoading = sum("cacheyd_disk_index_objects"), sum("cacheyd_disk_index_loading")
	f.BucketReads, f.BucketUploads = by("cacheyd_s3_reads_total", "result"), by("cacheyd_s3_uploads_total", "result")
	f.BucketRead, f.BucketWritten = sum("cacheyd_s3_read_bytes_total"), sum("cacheyd_s3_written_bytes_total")
	f.Members = by("cacheyd_cluster_member_skipped", "member")
	f.ClusterDirect = by("cacheyd_cluster_direct_total", "reason")
	f.ServedToPeers = sum("cacheyd_cluster_served_total")
	f.FromPeersBytes = sum("cacheyd_cluster_bytes_total")
	return f, nil
}

// peerAnswered is how many requests a peer or the parent answered with
// content (its hit, a fill it let this replica join, or one it fetched):
// each a miss here that cost this replica no upstream fetch. Tags asked of
// the owner are among them, so the page bounds them by the misses.
func peerAnswered(asked []labelled) float64 {
	n := 0.0
	for _, l := range asked {
		switch l.Label {
		case "hit", "joined", "fetched":
			n += l.Value
		}
	}
	return n
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// serveStatus answers GET / with a small HTML page of the live figures, for
// people without Prometheus.
func (s *Server) serveStatus(ctx *fasthttp.RequestCtx, in *incoming) {
	if !isRead(in.method) {
		serveText(ctx, in, http.StatusMethodNotAllowed, "method not allowed\n")
		return
	}
	f, err := s.gatherFigures()
	if err != nil {
		serveText(ctx, in, http.StatusInternalServerError, "cannot read figures\n")
		return
	}
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, f); err != nil {
		serveText(ctx, in, http.StatusInternalServerError, "cannot render status\n")
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetStatusCode(http.StatusOK)
	if in.method == http.MethodHead {
		ctx.Response.SkipBody = true
		ctx.Response.Header.SetContentLength(buf.Len())
		return
	}
	ctx.SetBody(buf.Bytes())
}

// statusPage is parsed once; html/template escapes every value.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": func(v any) string {
		switch v := v.(type) {
		case int64:
			return humanBytes(v)
		case float64:
			return humanBytes(v)
		}
		return "?"
	},
	"pct": func(v float64) string { return formatFloat(v, 1) + "%" },
	"n":   func(v float64) string { return formatFloat(v, 0) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cacheyd</title>
<meta http-equiv="refresh" content="10">
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}td.n{text-align:right;font-variant-numeric:tabular-nums}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}.bad{color:#b00}</style>
</head><body>
<h1>cacheyd {{.Info.Version}}</h1>
<p>{{if .Ready}}ready{{else}}<span class="bad">not ready</span>{{end}} · up {{.Uptime}} · default registry {{.Registry}} · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></p>
<h2>Requests for content</h2>
<table>
<tr><th>hit ratio</th><td class="n">{{pct .HitRatio}}</td><td>answered from memory or disk</td></tr>
<tr><th>upstream fetches avoided</th><td class="n">{{pct .PullsSaved}}</td><td>hits, joined fills and misses a peer or the parent answered</td></tr>
<tr><th>hits</th><td class="n">{{n .Hits}}</td><td></td></tr>
<tr><th>joined a fill</th><td class="n">{{n .Joins}}</td><td>streamed a download another request started</td></tr>
<tr><th>misses</th><td class="n">{{n .Misses}}</td><td>started a fill</td></tr>
</table>
<h2>Bytes</h2>
<table>
<tr><th>served</th><td class="n">{{bytes .Served}}</td><td>{{range .ServedBySource}}{{.Label}} {{bytes .Value}} · {{end}}</td></tr>
<tr><th>fetched upstream</th><td class="n">{{bytes .Fetched}}</td><td>{{range .FetchedByReg}}{{.Label}} {{bytes .Value}} · {{end}}</td></tr>
<tr><th>saved</th><td class="n">{{bytes .Saved}}</td><td>served minus fetched</td></tr>
<tr><th>streamed uncached</th><td class="n">{{n .Uncached}}</td><td>requests the disk could not take</td></tr>
</table>
<h2>Fills and tags</h2>
<table>
<tr><th>fills in flight</th><td class="n">{{n .FillsInFlight}}</td><td></td></tr>
<tr><th>fills done</th><td class="n">{{n .FillsOK}}</td><td>{{if .FillsFailed}}<span class="bad">{{n .FillsFailed}} failed</span>{{end}}</td></tr>
<tr><th>tag lookups</th><td class="n"></td><td>{{range .TagLookups}}{{.Label}} {{n .Value}} · {{end}}</td></tr>
<tr><th>stale tag answers</th><td class="n">{{n .Stale}}</td><td>served while upstream failed</td></tr>
</table>
<h2>Tiers</h2>
<table>
<tr><th>memory</th><td class="n">{{bytes .MemoryUsed}}</td><td>{{if .Info.MemoryBytes}}{{pct .MemoryPercent}} of {{bytes .Info.MemoryBytes}}{{end}}</td></tr>
<tr><th>disk</th><td class="n">{{bytes .DiskUsed}}</td><td>{{if .Info.DiskBytes}}{{pct .DiskPercent}} of {{bytes .Info.DiskBytes}}{{end}}</td></tr>
<tr><th>disk index</th><td class="n">{{n .IndexObjects}}</td><td>{{if .IndexLoading}}objects indexed so far: loading, serving meanwhile{{else}}objects{{end}}</td></tr>
<tr><th>evictions</th><td class="n">{{n .Evictions}}</td><td>objects evicted to stay within the disk budget</td></tr>
{{if .Info.Bucket}}<tr><th>object store</th><td class="n">{{bytes .BucketRead}} read</td><td>{{.Info.Bucket}}: reads {{range .BucketReads}}{{.Label}} {{n .Value}} · {{end}}</td></tr>
<tr><th></th><td class="n">{{bytes .BucketWritten}} written</td><td>uploads {{range .BucketUploads}}{{.Label}} {{n .Value}} · {{end}}</td></tr>
{{end}}</table>
{{if .Budgets}}<h2>Pull budgets</h2>
<table>
<tr><th>registry</th><th>remaining</th><th>limit</th><th>window</th><th>stated</th><th></th><th>seen by</th></tr>
{{range .Budgets}}<tr><th>{{.Registry}}</th><td class="n">{{.Remaining}} ({{pct .Percent}})</td><td class="n">{{.Limit}}</td><td class="n">{{if .Window}}{{.Window}}{{else}}?{{end}}</td><td>{{.Ago}} ago</td><td>{{if .HeldFor}}<span class="bad">manifest GETs held for {{.HeldFor}}</span>{{end}}</td><td>{{if .SeenBy}}{{.SeenBy}}{{else}}this replica{{end}}</td></tr>
{{end}}</table>{{end}}
{{if or .Info.Member .Info.Parent}}<h2>Cluster</h2>
<table>
{{$self := .Info.Member}}{{range .Members}}<tr><th>{{.Label}}</th><td class="n">{{if eq .Label $self}}this replica{{else if .Value}}<span class="bad">skipped</span>{{else}}asked{{end}}</td><td>member</td></tr>
{{end}}{{if .Info.Parent}}<tr><th>{{.Info.Parent}}</th><td class="n">parent</td><td>asked before upstream</td></tr>
{{end}}<tr><th>asked peers and parent</th><td class="n"></td><td>{{range .ClusterAsked}}{{.Label}} {{n .Value}} · {{end}}</td></tr>
<tr><th>fetched itself</th><td class="n"></td><td>{{range .ClusterDirect}}{{.Label}} {{n .Value}} · {{end}}</td></tr>
<tr><th>received from peers and parent</th><td class="n">{{bytes .FromPeersBytes}}</td><td></td></tr>
<tr><th>answered for peers</th><td class="n">{{n .ServedToPeers}}</td><td>requests</td></tr>
</table>{{end}}
</body></html>
`))
