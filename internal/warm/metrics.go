package warm

import (
	"context"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The cacheyd series the warm reads from /metrics.
const (
	// upstreamMetric is cacheyd's counter of body bytes read from upstream.
	upstreamMetric = "cacheyd_upstream_bytes_total"
	// pullsMetric counts the manifest GETs a registry counts as pulls.
	pullsMetric = "cacheyd_upstream_pulls_total"
	// requestsMetric counts every upstream request: a registry with a
	// series here has a label of its own.
	requestsMetric  = "cacheyd_upstream_requests_total"
	remainingMetric = "cacheyd_upstream_ratelimit_remaining"
	limitMetric     = "cacheyd_upstream_ratelimit_limit"
	// otherLabel is the registry label cacheyd gives a registry it was not
	// configured with until that registry has served content once.
	otherLabel = "other"
)

// snapshot is what one read of cacheyd's /metrics says.
type snapshot struct {
	bytes     float64            // upstreamMetric over every registry
	pulls     map[string]float64 // pullsMetric by registry label
	labelled  map[string]bool    // registries with a label of their own
	remaining map[string]float64 // remainingMetric by registry label
	limit     map[string]float64 // limitMetric by registry label
}

// scrape reads cacheyd's /metrics. A cacheyd that has fetched nothing yet
// has none of these series: zeros and empty maps.
func scrape(ctx context.Context, client *http.Client, base string) (*snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &snapshot{
		pulls: byRegistry(fams[pullsMetric]), labelled: map[string]bool{},
		remaining: byRegistry(fams[remainingMetric]), limit: byRegistry(fams[limitMetric]),
	}
	for _, v := range byRegistry(fams[upstreamMetric]) {
		s.bytes += v
	}
	for r := range byRegistry(fams[requestsMetric]) {
		s.labelled[r] = true
	}
	return s, nil
}

// byRegistry sums a counter's or gauge's series by their registry label.
func byRegistry(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var reg string
		for _, l := range m.GetLabel() {
			if l.GetName() == "registry" {
				reg = l.GetValue()
			}
		}
		switch {
		case m.Counter != nil:
			out[reg] += m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[reg] += m.GetGauge().GetValue()
		}
	}
	return out
}

// pullsOf is the counted pulls of registries in s. A registry without a
// label of its own yet is counted as "other" by cacheyd, so "other" is
// added when one of them lacked a label in before (and may have become
// labelled during the warm).
func (s *snapshot) pullsOf(registries []string, before *snapshot) float64 {
	var n float64
	other := false
	for _, r := range registries {
		n += s.pulls[r]
		if !before.labelled[r] {
			other = true
		}
	}
	if other {
		n += s.pulls[otherLabel]
	}
	return n
}
