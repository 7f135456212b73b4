package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestHangingUpstreamIsAGatewayError: an upstream that accepts connections
// and never answers gets a tag lookup and a blob answered with a gateway
// error (502 or 504) and an OCI error body, under --upstream-header-timeout,
// not a 500. The test's own deadline bounds the wait, far above the flag.
func TestHangingUpstreamIsAGatewayError(t *testing.T) {
	silent := registrytest.NewSilentListener(t)
	flags := secureFlags(t, map[string]string{"docker.io": "http://" + silent.Addr()})
	flags.UpstreamHeaderTimeout = 200 * time.Millisecond
	base := mustServe(t, flags)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, target := range []string{
		"/v2/team/app/manifests/v1",
		"/v2/team/app/blobs/" + oci.FromBytes([]byte("never sent")).String(),
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		gateway := resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout
		if !gateway || ociCode(body) == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want 502 or 504 with an OCI error", target, resp.StatusCode, body)
		}
	}
}
