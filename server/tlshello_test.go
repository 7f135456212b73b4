package server

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/logtest"
	"github.com/cacheyd/cacheyd/metrics"
)

// TestTLSHelloOnPlainPort: a client trying HTTPS first (crane does, on
// every call) sends a real ClientHello to the plain-HTTP port. Each is
// answered 400, which fails the handshake for the client to retry over
// HTTP, logged as one short line without the handshake's bytes, and
// counted as refused, not as a request.
func TestTLSHelloOnPlainPort(t *testing.T) {
	var logs logtest.Buffer
	m := metrics.New(prometheus.NewRegistry())
	ts := startTCP(t, Config{Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, newTestCache(t, newImage().origin, nil), nil)

	const hellos = 3
	for range hellos {
		c := tls.Client(dialRaw(t, ts.addr), &tls.Config{ServerName: "cacheyd.test", MinVersion: tls.VersionTLS12})
		err := c.HandshakeContext(t.Context())
		if err == nil || !strings.Contains(err.Error(), "does not look like a TLS handshake") {
			t.Errorf("handshake: %v, want the client told the answer is not TLS", err)
		}
		c.Close()
	}

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != hellos {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), hellos, logs.String())
	}
	for _, l := range lines {
		if len(l) > 300 || strings.Contains(l, `\x`) || strings.Contains(l, "request") || !strings.Contains(l, "tls handshake") {
			t.Errorf("log line %d bytes, want one short line naming the handshake and none of its bytes:\n%s", len(l), l)
		}
	}
	if got := testutil.ToFloat64(m.RequestsRefused.WithLabelValues("tls")); got != hellos {
		t.Errorf("cacheyd_requests_refused_total{reason=\"tls\"} = %v, want %d", got, hellos)
	}
	if n := testutil.CollectAndCount(m.Requests); n != 0 {
		t.Errorf("cacheyd_requests_total has %d series, want none: no request was read", n)
	}
}
