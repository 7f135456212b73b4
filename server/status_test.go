package server

import (
	"net/http"
	"strings"
	"testing"

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
