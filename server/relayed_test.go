package server

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/oci"
)

// TestUpstreamsDoingIsMarkedRelayed: every error answer that is upstream's
// doing carries oci.RelayedHeader, so that a cacheyd that asked this one
// neither retries it nor holds it against this one; cacheyd's own
// refusals never do.
func TestUpstreamsDoingIsMarkedRelayed(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		marked bool
	}{
		{"the registry's 401 challenge", &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Challenge: challenge, Upstream: true}, true},
		{"a registry whose challenge mimics cacheyd's guard", &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Challenge: errNoClientToken.Challenge, Upstream: true}, true},
		{"the registry's 404", fmt.Errorf("fill: %w", &oci.Error{Status: 404, Code: oci.CodeBlobUnknown, Upstream: true}), true},
		{"the registry's 503", &oci.Error{Status: 503, Code: oci.CodeUnavailable, Upstream: true}, true},
		{"unreachable", fmt.Errorf("dial: %w", oci.ErrUpstreamUnavailable), true},
		{"too slow", fmt.Errorf("lookup: %w: %w", oci.ErrUpstreamUnavailable, oci.ErrUpstreamTimeout), true},
		{"a transfer it failed", fmt.Errorf("fill: %w", oci.ErrUpstreamFault), true},
		{"relayed by another cacheyd", fmt.Errorf("peer: %w", &oci.Error{Status: 502, Code: oci.CodeUnavailable, Upstream: true, Err: oci.ErrRelayed}), true},
		{"the client-token guard", errNoClientToken, false},
		{"a malformed name", oci.ErrNameInvalid("bad"), false},
		{"too many fills", &oci.Error{Status: 503, Code: oci.CodeUnavailable, RetryAfterHeader: "1", Message: "too many fills in flight"}, false},
		{"an internal error", errBoom, false},
		{"shutting down", fmt.Errorf("wait: %w", context.Canceled), false},
		{"a method refused", errMethod("PUT", "GET, HEAD"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp fasthttp.Response
			writeError(&resp, tt.err)
			if got := string(resp.Header.Peek(oci.RelayedHeader)) == "1"; got != tt.marked {
				t.Errorf("%s: %q, want marked %v", oci.RelayedHeader, resp.Header.Peek(oci.RelayedHeader), tt.marked)
			}
		})
	}
}

// TestGuardRefusalIsNotRelayed: through the server, the client-token
// guard's own 401 is unmarked, while the same challenge from upstream,
// passed on, is marked: a replica can tell its peer's refusal of its token
// from a registry that answers like one.
func TestGuardRefusalIsNotRelayed(t *testing.T) {
	mimic := &oci.Error{Status: http.StatusUnauthorized, Code: oci.CodeUnauthorized, Challenge: errNoClientToken.Challenge, Upstream: true}
	c := cacheFunc(func(context.Context, *oci.Request) (*cache.Object, error) { return nil, mimic })
	ts := startServer(t, Config{ClientTokens: []string{"client-token-0123456789"}}, c)
	const target = "/v2/org/app/blobs/" + string(digestA) + "?ns=registry.example.test"
	resp, _, err := ts.do(t, http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || resp.Header.Get(oci.RelayedHeader) != "" {
		t.Errorf("guard: %d with %s %q, want an unmarked 401", resp.StatusCode, oci.RelayedHeader, resp.Header.Get(oci.RelayedHeader))
	}
	resp, _, err = ts.do(t, http.MethodGet, target, http.Header{TokenHeader: {"client-token-0123456789"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != errNoClientToken.Challenge || resp.Header.Get(oci.RelayedHeader) != "1" {
		t.Errorf("upstream: %d, challenge %q, %s %q; want the registry's 401 marked relayed", resp.StatusCode,
			resp.Header.Get("WWW-Authenticate"), oci.RelayedHeader, resp.Header.Get(oci.RelayedHeader))
	}
}
