package server

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/metrics"
)

// counters keeps the request metrics' children at hand: looking a child up
// by its label values hashes them on every request, which a memory hit can
// feel. The label values come from small fixed sets (API kinds, statuses),
// so the maps stay small.
type counters struct {
	m *metrics.Metrics

	requests  sync.Map // requestKey → prometheus.Counter
	durations sync.Map // kind → prometheus.Observer
	served    sync.Map // source → prometheus.Counter
}

type requestKey struct {
	kind   string
	status int
}

func (c *counters) request(kind string, status int) prometheus.Counter {
	k := requestKey{kind, status}
	if v, ok := c.requests.Load(k); ok {
		return v.(prometheus.Counter)
	}
	v, _ := c.requests.LoadOrStore(k, c.m.Requests.WithLabelValues(kind, strconv.Itoa(status)))
	return v.(prometheus.Counter)
}

func (c *counters) duration(kind string) prometheus.Observer {
	if v, ok := c.durations.Load(kind); ok {
		return v.(prometheus.Observer)
	}
	v, _ := c.durations.LoadOrStore(kind, c.m.RequestDuration.WithLabelValues(kind))
	return v.(prometheus.Observer)
}

func (c *counters) servedBytes(source string) prometheus.Counter {
	if v, ok := c.served.Load(source); ok {
		return v.(prometheus.Counter)
	}
	v, _ := c.served.LoadOrStore(source, c.m.BytesServed.WithLabelValues(source))
	return v.(prometheus.Counter)
}
