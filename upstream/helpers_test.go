package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// fakeResolver answers from a fixed table so that no test name reaches real
// DNS; an unknown name is "not found".
type fakeResolver map[string][]string

func (r fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host (test resolver)", Name: host, IsNotFound: true}
	}
	out := make([]net.IPAddr, len(ips))
	for i, s := range ips {
		out[i] = net.IPAddr{IP: net.ParseIP(s)}
	}
	return out, nil
}

// loopbackResolver resolves only localhost.
var loopbackResolver = fakeResolver{"localhost": {"127.0.0.1"}}

// newClient builds a Client on a fresh metrics registry, resolving only
// localhost unless cfg names a resolver.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Resolver == nil {
		cfg.Resolver = loopbackResolver
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(prometheus.NewRegistry())
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// testRegistry is the registry name tests map to their servers.
const testRegistry = "registry.test"

// serveRegistry starts h behind an open /v2/ (so cacheyd's identity is
// anonymous without a token) and returns a Client mapping testRegistry to it.
func serveRegistry(t *testing.T, cfg Config, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg.RegistryURLs = map[string]string{testRegistry: srv.URL}
	return newClient(t, cfg)
}

func blobRequest(method string, content []byte) *oci.Request {
	return &oci.Request{
		Method:     method,
		Kind:       oci.KindBlob,
		Registry:   testRegistry,
		Repository: "team/app",
		Reference:  oci.Reference{Digest: oci.FromBytes(content)},
	}
}

func manifestRequest(method, tag string) *oci.Request {
	return &oci.Request{
		Method:     method,
		Kind:       oci.KindManifest,
		Registry:   testRegistry,
		Repository: "team/app",
		Reference:  oci.Reference{Tag: tag},
	}
}

// readBody reads and closes a Response's body ("" for none).
func readBody(t *testing.T, r *oci.Response) string {
	t.Helper()
	if r.Body == nil {
		return ""
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// counter reads one UpstreamRequests count.
func counter(c *Client, registry, method, kind, code string) int {
	return int(testutil.ToFloat64(c.metrics.UpstreamRequests.WithLabelValues(registry, method, kind, code)))
}
