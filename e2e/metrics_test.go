//go:build linux

package e2e

import "testing"

func TestSumSamples(t *testing.T) {
	const exposition = `# HELP cacheyd_upstream_requests_total Requests sent to upstream registries.
# TYPE cacheyd_upstream_requests_total counter
cacheyd_upstream_requests_total{code="200",kind="blob",method="GET",registry="localhost:5000"} 4
cacheyd_upstream_requests_total{code="200",kind="manifest",method="HEAD",registry="localhost:5000"} 1
cacheyd_upstream_requests_total{code="401",kind="manifest",method="HEAD",registry="docker.io"} 2
cacheyd_upstream_requests_total_extra{registry="localhost:5000"} 100
cacheyd_fills_in_flight 3
cacheyd_fills_in_flight_max 9
`
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"all samples", "cacheyd_upstream_requests_total", nil, 7},
		{"one registry", "cacheyd_upstream_requests_total", map[string]string{"registry": "localhost:5000"}, 5},
		{"two labels", "cacheyd_upstream_requests_total", map[string]string{"registry": "localhost:5000", "kind": "blob"}, 4},
		{"no match", "cacheyd_upstream_requests_total", map[string]string{"registry": "ghcr.io"}, 0},
		{"no labels", "cacheyd_fills_in_flight", nil, 3},
		{"absent metric", "cacheyd_nothing", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sumSamples(exposition, tt.metric, tt.labels)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("sumSamples(%s, %v) = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
	if _, err := sumSamples("cacheyd_x{a=\"b\"} notanumber\n", "cacheyd_x", nil); err == nil {
		t.Error("sumSamples accepted a sample that is not a number")
	}
}
