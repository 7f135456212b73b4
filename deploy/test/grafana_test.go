package deploytest

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	promparser "github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// externalMetrics are series that exist without cacheyd defining them:
// Prometheus's own per-target "up".
var externalMetrics = map[string][]string{"up": nil}

// scrapeLabels are added by Prometheus to every series it scrapes.
var scrapeLabels = []string{"job", "instance", "namespace", "pod", "service", "endpoint", "container"}

// cacheydMetrics reads the metrics package's files and returns every
// metric name they define with its label names; a histogram's _bucket,
// _sum and _count series are included (with "le" on _bucket).
func cacheydMetrics(t *testing.T) map[string][]string {
	t.Helper()
	path := filepath.Join(repoRoot, "metrics")
	files, err := filepath.Glob(filepath.Join(path, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		collectMetrics(f, out)
	}
	if len(out) < 10 || out["cacheyd_upstream_bytes_total"] == nil {
		t.Fatalf("read only %d metrics from %s: %v", len(out), path, out)
	}
	return out
}

// collectMetrics adds the metrics f defines (prometheus.New*(Opts{Name:
// ...}, labels)) to out.
func collectMetrics(f *ast.File, out map[string][]string) {
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
			return true
		}
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			return true
		}
		var name string
		for _, el := range opts.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if id, isID := kv.Key.(*ast.Ident); ok && isID && id.Name == "Name" {
				if lit, ok := kv.Value.(*ast.BasicLit); ok {
					name, _ = strconv.Unquote(lit.Value)
				}
			}
		}
		if name == "" {
			return true
		}
		var labels []string
		if len(call.Args) > 1 {
			if lit, ok := call.Args[1].(*ast.CompositeLit); ok {
				for _, el := range lit.Elts {
					if s, ok := el.(*ast.BasicLit); ok {
						l, _ := strconv.Unquote(s.Value)
						labels = append(labels, l)
					}
				}
			}
		}
		if strings.HasPrefix(sel.Sel.Name, "NewHistogram") {
			out[name+"_bucket"] = append(append([]string(nil), labels...), "le")
			out[name+"_sum"] = labels
			out[name+"_count"] = labels
		} else {
			out[name] = labels
		}
		return true
	})
}

// grafanaVars replaces Grafana's variables with values PromQL accepts:
// range intervals with a duration, anything else with a plain word.
func grafanaVars(expr string) string {
	expr = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`).ReplaceAllString(expr, "5m")
	return regexp.MustCompile(`\$\{?\w+\}?`).ReplaceAllString(expr, "x")
}

// exprProblems parses expr and returns what is wrong with it: a metric
// cacheyd does not define, a label matcher on a label that metric does not
// carry (Prometheus's scrape labels aside), or no metric at all.
func exprProblems(expr string, known map[string][]string) []string {
	p := promparser.NewParser(promparser.Options{})
	e, err := p.ParseExpr(grafanaVars(expr))
	if err != nil {
		return []string{fmt.Sprintf("%q does not parse: %v", expr, err)}
	}
	var out []string
	n := 0
	promparser.Inspect(e, func(node promparser.Node, _ []promparser.Node) error {
		if vs, ok := node.(*promparser.VectorSelector); ok {
			n++
			out = append(out, selectorProblems(vs, known)...)
		}
		return nil
	})
	if n == 0 {
		out = append(out, fmt.Sprintf("%q selects no metric", expr))
	}
	return out
}

func selectorProblems(vs *promparser.VectorSelector, known map[string][]string) []string {
	labels, ok := known[vs.Name]
	if !ok {
		return []string{fmt.Sprintf("metric %q is not defined in package metrics", vs.Name)}
	}
	var out []string
	for _, m := range vs.LabelMatchers {
		if m.Name == "__name__" || contains(scrapeLabels, m.Name) || contains(labels, m.Name) {
			continue
		}
		out = append(out, fmt.Sprintf("%s has no label %q (it has %v)", vs.Name, m.Name, labels))
	}
	return out
}

// checkExpr reports exprProblems as test errors.
func checkExpr(t *testing.T, where, expr string, known map[string][]string) {
	t.Helper()
	for _, p := range exprProblems(expr, known) {
		t.Errorf("%s: %s", where, p)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func allMetrics(t *testing.T) map[string][]string {
	known := cacheydMetrics(t)
	for k, v := range externalMetrics {
		known[k] = v
	}
	return known
}

// TestDashboard parses the Grafana dashboard and every query in it.
func TestDashboard(t *testing.T) {
	src, err := os.ReadFile(deployDir("grafana", "cacheyd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		ID      int                      `json:"id"`
		Type    string                   `json:"type"`
		Title   string                   `json:"title"`
		Targets []target                 `json:"targets"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	}
	var dash struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(src, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("dashboard has no uid or title")
	}
	known := allMetrics(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W == 0 {
			t.Errorf("panel %q: gridPos %+v does not fit 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] {
				t.Errorf("panel %q: refId %s used twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			checkExpr(t, "panel "+strconv.Quote(p.Title), tg.Expr, known)
			for _, m := range regexp.MustCompile(`cacheyd_\w+`).FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(m, "_bucket")] = true
			}
		}
	}
	// label_values(selector, label) variables.
	lv := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		qs, _ := q["query"].(string)
		m := lv.FindStringSubmatch(qs)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, qs)
			continue
		}
		ms, err := promparser.NewParser(promparser.Options{}).ParseMetricSelector(grafanaVars(m[1]))
		if err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
			continue
		}
		vs := &promparser.VectorSelector{LabelMatchers: ms}
		for _, mt := range ms {
			if mt.Name == "__name__" {
				vs.Name = mt.Value
			}
		}
		for _, p := range selectorProblems(vs, known) {
			t.Errorf("variable %s: %s", v.Name, p)
		}
	}
	// What the dashboard must show: the savings, the fills, the tiers, latency, the cluster, the bucket.
	for _, m := range []string{
		"cacheyd_cache_hits_total", "cacheyd_cache_misses_total", "cacheyd_served_bytes_total",
		"cacheyd_upstream_bytes_total", "cacheyd_fills_in_flight", "cacheyd_fill_joins_total",
		"cacheyd_tag_lookups_total", "cacheyd_disk_tier_bytes", "cacheyd_request_duration_seconds",
		"cacheyd_cluster_members", "cacheyd_cluster_member_skipped", "cacheyd_cluster_requests_total",
		"cacheyd_cluster_direct_total", "cacheyd_cluster_bytes_total", "cacheyd_cluster_served_total",
		"cacheyd_cluster_refused_total", "cacheyd_source_failures_total",
		"cacheyd_upstream_ratelimit_remaining", "cacheyd_upstream_ratelimit_limit", "cacheyd_upstream_pulls_total",
		"cacheyd_upstream_ratelimit_held_total",
		"cacheyd_s3_reads_total", "cacheyd_s3_read_bytes_total", "cacheyd_s3_written_bytes_total",
		"cacheyd_s3_uploads_total", "cacheyd_s3_read_errors_total", "cacheyd_s3_request_duration_seconds",
	} {
		if !used[m] {
			t.Errorf("the dashboard shows nothing of %s", m)
		}
	}
}

// TestAlertRules parses the rules file as the Prometheus Operator's type
// (strictly) and every expression in it.
func TestAlertRules(t *testing.T) {
	src, err := os.ReadFile(deployDir("grafana", "cacheyd-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(src, &spec); err != nil {
		t.Fatalf("cacheyd-rules.yaml: %v", err)
	}
	known := allMetrics(t)
	var alerts []string
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert name", g.Name)
				continue
			}
			alerts = append(alerts, r.Alert)
			checkExpr(t, "alert "+r.Alert, r.Expr.String(), known)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: needs a severity, a summary and a description", r.Alert)
			}
		}
	}
	// An upstream failing, a full disk, a collapsing hit ratio, a pull
	// budget nearly spent, a registry's 429.
	for _, want := range []string{"CacheydUpstreamFailing", "CacheydDiskFull", "CacheydHitRatioCollapsed",
		"CacheydPullBudgetLow", "CacheydRegistryRateLimited"} {
		if !contains(alerts, want) {
			t.Errorf("no alert %s (have %v)", want, alerts)
		}
	}
}

// TestMetricsChecksCatchMistakes: the checks above fail on a misspelt
// metric, a label the metric lacks, and a query that does not parse.
func TestMetricsChecksCatchMistakes(t *testing.T) {
	known := allMetrics(t)
	for _, expr := range []string{
		`rate(cacheyd_cache_hit_total[5m])`,
		`sum(rate(cacheyd_cache_hits_total{kind="blob"}[$__rate_interval]))`,
		`sum(rate(cacheyd_served_bytes_total[5m])`,
		`vector(1)`,
	} {
		if len(exprProblems(expr, known)) == 0 {
			t.Errorf("exprProblems accepted %q", expr)
		}
	}
	if p := exprProblems(`sum by (tier) (rate(cacheyd_cache_hits_total{job=~"$job", tier="disk"}[$__rate_interval]))`, known); len(p) > 0 {
		t.Errorf("a correct query refused: %v", p)
	}
}
