package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
)

// TestStatusPage: GET / shows the live figures from the same collectors as
// /metrics, escaped, and HEAD answers the same headers without a body.
func TestStatusPage(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Hits.WithLabelValues("memory").Add(3)
	m.FillsJoined.Add(1)
	m.Misses.WithLabelValues("blob").Add(1)
	m.BytesServed.WithLabelValues("disk").Add(3 << 30)
	m.UpstreamBytes.WithLabelValues("docker.io").Add(1 << 30)
	m.DiskBytes.Set(512 << 20)
	ts := startServer(t, Config{Metrics: m, Gatherer: reg, Status: StatusInfo{Version: "v<1>", DiskBytes: 1 << 30}}, newTestCache(t, origintest.New(), nil))

	resp, body, err := ts.do(t, http.MethodGet, "/", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	page := string(body)
	for _, want := range []string{
		"v&lt;1&gt;",        // escaped
		"60.0%",             // hit ratio: 3 of 5
		"80.0%",             // fetches avoided: 4 of 5
		"3.0 GiB",           // served
		"2.0 GiB",           // saved
		"docker.io 1.0 GiB", // fetched by registry
		"50.0% of 1.0 GiB",  // disk use against the budget
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	resp, body, err = ts.do(t, http.MethodHead, "/", nil)
	if err != nil || resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /: %v, %d bytes, %v", resp.StatusCode, len(body), err)
	}
}

// TestStatusPullBudgets: the page shows each registry's pull budget as the
// function it is given reports it at the view, and which registry's
// manifest GETs are held.
func TestStatusPullBudgets(t *testing.T) {
	now := time.Now()
	calls := 0
	budgets := func() []PullBudget {
		calls++
		return []PullBudget{
			{Registry: "docker.io", Limit: 100, Remaining: 76, Window: 6 * time.Hour, Seen: now.Add(-90 * time.Second)},
			{Registry: "ghcr.io", Limit: 50, Remaining: 0, Seen: now, HeldUntil: now.Add(time.Hour + 30*time.Second)},
		}
	}
	ts := startServer(t, Config{Status: StatusInfo{Budgets: budgets}}, newTestCache(t, origintest.New(), nil))
	resp, body, err := ts.do(t, http.MethodGet, "/", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	page := string(body)
	for _, want := range []string{
		"Pull budgets",
		`<th>docker.io</th><td class="n">76 (76.0%)</td><td class="n">100</td><td class="n">6h0m0s</td><td>1m30s ago</td><td></td>`,
		`<th>ghcr.io</th><td class="n">0 (0.0%)</td><td class="n">50</td><td class="n">?</td>`,
		"manifest GETs held for 1h0m30s",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if calls != 1 {
		t.Errorf("budgets read %d times for one view, want 1", calls)
	}
}

// TestStatusPullBudgetsSeenBy: each budget says which replica read it from
// the registry: this one, or the member it was heard from.
func TestStatusPullBudgetsSeenBy(t *testing.T) {
	now := time.Now()
	budgets := func() []PullBudget {
		return []PullBudget{
			{Registry: "docker.io", Limit: 100, Remaining: 76, Window: 6 * time.Hour, Seen: now.Add(-5 * time.Second), SeenBy: "10.0.0.7:30123"},
			{Registry: "ghcr.io", Limit: 50, Remaining: 49, Seen: now},
		}
	}
	ts := startServer(t, Config{Status: StatusInfo{Budgets: budgets}}, newTestCache(t, origintest.New(), nil))
	resp, body, err := ts.do(t, http.MethodGet, "/", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	page := string(body)
	for _, want := range []string{
		`<th>stated</th><th></th><th>seen by</th></tr>`,
		`<th>docker.io</th><td class="n">76 (76.0%)</td><td class="n">100</td><td class="n">6h0m0s</td><td>`,
		`<th>ghcr.io</th><td class="n">49 (98.0%)</td><td class="n">50</td><td class="n">?</td><td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	// The age depends on when the page is made; who saw it ends the row.
	for reg, by := range map[string]string{"docker.io": "10.0.0.7:30123", "ghcr.io": "this replica"} {
		_, row, _ := strings.Cut(page, "<th>"+reg+"</th>")
		row, _, _ = strings.Cut(row, "</tr>")
		if !strings.HasSuffix(row, " ago</td><td></td><td>"+by+"</td>") {
			t.Errorf("%s's row %q does not end seen by %s", reg, row, by)
		}
	}
}

// TestStatusBucket: with an object store, the tiers' table shows it by
// name, with what was read from and written to it and its reads and
// uploads by result, from the collectors /metrics serves; without one, no
// row.
func TestStatusBucket(t *testing.T) {
	reg := prometheus.NewRegistry()
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cacheyd_s3_reads_total"}, []string{"result"})
	uploads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cacheyd_s3_uploads_total"}, []string{"result"})
	read := prometheus.NewCounter(prometheus.CounterOpts{Name: "cacheyd_s3_read_bytes_total"})
	written := prometheus.NewCounter(prometheus.CounterOpts{Name: "cacheyd_s3_written_bytes_total"})
	reg.MustRegister(reads, uploads, read, written)
	reads.WithLabelValues("hit").Add(7)
	reads.WithLabelValues("miss").Add(2)
	uploads.WithLabelValues("stored").Add(3)
	uploads.WithLabelValues("dropped").Add(1)
	read.Add(3 << 20)
	written.Add(1 << 30)
	for _, bucket := range []string{"s3://layers/cacheyd/ at http://127.0.0.1:9000", ""} {
		ts := startServer(t, Config{Gatherer: reg, Status: StatusInfo{Bucket: bucket}}, newTestCache(t, origintest.New(), nil))
		_, body, err := ts.do(t, http.MethodGet, "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		page := string(body)
		if bucket == "" {
			if strings.Contains(page, "object store") {
				t.Errorf("a cacheyd without an object store shows one")
			}
			continue
		}
		for _, want := range []string{
			`<th>object store</th><td class="n">3.0 MiB read</td><td>s3://layers/cacheyd/ at http://127.0.0.1:9000: reads hit 7 · miss 2 · </td>`,
			`<td class="n">1.0 GiB written</td><td>uploads dropped 1 · stored 3 · </td>`,
		} {
			if !strings.Contains(page, want) {
				t.Errorf("status page lacks %q", want)
			}
		}
	}
}

// TestStatusPeersAndNotFound: a replica whose misses its peers answered
// avoided those upstream fetches, and a tag upstream does not have is its
// own outcome, not an error.
func TestStatusPeersAndNotFound(t *testing.T) {
	tests := []struct {
		name  string
		setup func(m *metrics.Metrics)
		want  []string
		not   []string
	}{
		{
			name: "everything from peers",
			setup: func(m *metrics.Metrics) {
				m.Hits.WithLabelValues("memory").Add(1)
				m.Misses.WithLabelValues("blob").Add(4)
				m.ClusterRequests.WithLabelValues("peer", "hit").Add(2)
				m.ClusterRequests.WithLabelValues("peer", "fetched").Add(1)
				m.ClusterRequests.WithLabelValues("parent", "joined").Add(1)
				m.ClusterRequests.WithLabelValues("peer", "fallback").Add(3)
			},
			// 1 hit and 4 misses peers answered, of 5 (it was 20%: the hit).
			want: []string{`<th>upstream fetches avoided</th><td class="n">100.0%</td>`},
		},
		{
			name: "peers answered more than the misses (tags)",
			setup: func(m *metrics.Metrics) {
				m.Hits.WithLabelValues("disk").Add(1)
				m.Misses.WithLabelValues("blob").Add(3)
				m.ClusterRequests.WithLabelValues("peer", "hit").Add(1)
				m.ClusterRequests.WithLabelValues("peer", "fetched").Add(9)
			},
			want: []string{`<th>upstream fetches avoided</th><td class="n">100.0%</td>`}, // bounded by the misses
		},
		{
			name: "some from upstream",
			setup: func(m *metrics.Metrics) {
				m.Misses.WithLabelValues("blob").Add(4)
				m.ClusterRequests.WithLabelValues("peer", "hit").Add(1)
			},
			want: []string{`<th>upstream fetches avoided</th><td class="n">25.0%</td>`},
		},
		{
			name: "a tag upstream does not have",
			setup: func(m *metrics.Metrics) {
				m.TagLookups.WithLabelValues("fresh").Add(5)
				m.TagLookups.WithLabelValues("notfound").Add(2)
			},
			want: []string{"fresh 5", "notfound 2"},
			not:  []string{"error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := metrics.New(reg)
			tt.setup(m)
			ts := startServer(t, Config{Metrics: m, Gatherer: reg}, newTestCache(t, origintest.New(), nil))
			resp, body, err := ts.do(t, http.MethodGet, "/", nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /: %v %v", resp, err)
			}
			page := string(body)
			for _, want := range tt.want {
				if !strings.Contains(page, want) {
					t.Errorf("status page lacks %q", want)
				}
			}
			for _, not := range tt.not {
				if strings.Contains(page, not) {
					t.Errorf("status page shows %q", not)
				}
			}
		})
	}
}

// TestStatusDiskIndex: the Tiers table shows the disk tier's index, and
// says so while it is still loading.
func TestStatusDiskIndex(t *testing.T) {
	for _, loading := range []bool{true, false} {
		reg := prometheus.NewRegistry()
		m := metrics.New(reg)
		m.DiskIndexObjects.Set(12345)
		if loading {
			m.DiskIndexLoading.Set(1)
		}
		ts := startServer(t, Config{Metrics: m, Gatherer: reg}, newTestCache(t, origintest.New(), nil))
		_, body, err := ts.do(t, http.MethodGet, "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		page := string(body)
		if !strings.Contains(page, "<th>disk index</th><td class=\"n\">12345</td>") {
			t.Errorf("loading=%v: the status page lacks the index's 12345 objects", loading)
		}
		if got := strings.Contains(page, "loading, serving meanwhile"); got != loading {
			t.Errorf("loading=%v: the page says loading: %v", loading, got)
		}
	}
}
