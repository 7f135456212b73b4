package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// redirectTo is a registry that serves an open /v2/ and answers every
// other request with a redirect to target (when set) or the content.
func redirectTo(target string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case target != "":
			http.Redirect(w, r, target, http.StatusTemporaryRedirect)
		default:
			w.Write(content)
		}
	}
}

// redirectingRegistry serves redirectTo(target) on 127.0.0.1 and returns
// its port.
func redirectingRegistry(t *testing.T, target string) string {
	t.Helper()
	srv := httptest.NewServer(redirectTo(target))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

// TestNoOtherPortOfATrustedHost: a mapped URL, an allowed registry and an
// allowed realm are trusted as exactly their host:port. Neither a registry
// a client names nor a redirect reaches any other port of their hosts, nor
// a name that resolves to loopback, nor an allowed realm's own address
// outside a token request: each is refused 403 DENIED, and a listener on
// such a port, by IP address or by a name resolving to it, accepts
// nothing.
func TestNoOtherPortOfATrustedHost(t *testing.T) {
	const p = "PORT" // each case's own listener's port
	resolver := fakeResolver{"localhost": {"127.0.0.1"}, "mirror.test": {"127.0.0.1"}, "bystander.test": {"127.0.0.1"}}
	tests := []struct {
		name     string
		byName   bool   // the registry is mapped as http://mirror.test:<port>, else http://127.0.0.1:<port>
		redirect string // where the registry redirects blob GETs; empty: nowhere
		registry string // the registry the request names
		realms   []string
		allowed  []string
	}{
		{name: "IP literal", byName: true, registry: "127.0.0.1:" + p},
		{name: "localhost", registry: "localhost:" + p},
		{name: "mapped IP on another port", registry: "127.0.0.1:" + p},
		{name: "mapped IP on its default port", registry: "127.0.0.1"},
		{name: "mapped host name on another port", byName: true, registry: "mirror.test:" + p},
		{name: "name resolving to loopback", registry: "bystander.test:" + p},
		{name: "allowed registry's host on another port", registry: "bystander.test:" + p, allowed: []string{"bystander.test:1"}},
		{name: "allowed registry's default port only", registry: "bystander.test:" + p, allowed: []string{"bystander.test"}},
		{name: "allowed realm as registry", registry: "localhost:" + p, realms: []string{"localhost:" + p}},
		{name: "allowed realm by name as registry", registry: "bystander.test:" + p, realms: []string{"bystander.test:" + p}},
		{name: "redirect to the mapped IP on another port", redirect: "http://127.0.0.1:" + p + "/blob"},
		{name: "redirect to the mapped host name on another port", byName: true, redirect: "http://mirror.test:" + p + "/blob"},
		{name: "redirect to a name resolving to loopback", redirect: "http://bystander.test:" + p + "/blob"},
		{name: "redirect to an allowed realm", redirect: "http://localhost:" + p + "/blob", realms: []string{"localhost:" + p}},
		{name: "redirect to an allowed realm by name", redirect: "http://bystander.test:" + p + "/blob", realms: []string{"bystander.test:" + p}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bystander := registrytest.NewCountingListener(t)
			at := func(s string) string { return strings.ReplaceAll(s, p, bystander.Port()) }
			atAll := func(ss []string) (out []string) {
				for _, s := range ss {
					out = append(out, at(s))
				}
				return out
			}
			port := redirectingRegistry(t, at(tt.redirect))
			base := "http://127.0.0.1:" + port
			if tt.byName {
				base = "http://mirror.test:" + port
			}
			c := newClient(t, Config{
				RegistryURLs: map[string]string{testRegistry: base},
				AllowRealms:  atAll(tt.realms), AllowedHosts: atAll(tt.allowed), Resolver: resolver,
			})
			req := blobRequest("GET", content)
			if tt.registry != "" {
				req.Registry = at(tt.registry)
			}
			resp, err := c.Fetch(t.Context(), req)
			if err == nil {
				readBody(t, resp)
			}
			if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied || !errors.Is(err, ErrRefused) {
				t.Errorf("Fetch = %v, want 403 DENIED wrapping ErrRefused", err)
			}
			if n, err := bystander.Accepted(t.Context()); err != nil || n != 0 {
				t.Errorf("the listener on %s accepted %d connections (%v), want 0", bystander.Addr(), n, err)
			}
		})
	}
}

// TestExactlyTrustedAddressesWork: what the operator named exactly is
// dialled at loopback: a mapped URL, an allowed registry by name and by IP
// address, a redirect to an allowed host:port.
func TestExactlyTrustedAddressesWork(t *testing.T) {
	srv, served := countingServer(t, false)
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	resolver := fakeResolver{"blobs.test": {"127.0.0.1"}, "mirror.test": {"127.0.0.1"}}
	tests := []struct {
		name     string
		cfg      Config
		registry string
	}{
		{"mapped by IP address", Config{RegistryURLs: map[string]string{testRegistry: "http://" + addr}}, testRegistry},
		{"mapped by name", Config{RegistryURLs: map[string]string{testRegistry: "http://mirror.test:" + port}}, testRegistry},
		{"redirect to an allowed host:port", Config{
			RegistryURLs: map[string]string{testRegistry: "http://127.0.0.1:" + redirectingRegistry(t, "http://blobs.test:"+port+"/blob")},
			AllowedHosts: []string{"blobs.test:" + port},
		}, testRegistry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := served.Load()
			cfg := tt.cfg
			cfg.Resolver = resolver
			c := newClient(t, cfg)
			req := blobRequest("GET", content)
			req.Registry = tt.registry
			resp, err := c.Fetch(t.Context(), req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if body := readBody(t, resp); body != string(content) {
				t.Errorf("body %q", body)
			}
			if n := served.Load() - before; n < 1 {
				t.Errorf("the trusted server saw %d requests", n)
			}
		})
	}
}

// TestRealmOnlyForTokens: an allowed realm serves tokens on its own
// transport; the same host:port is refused when a fetch is redirected
// there, so neither the trust nor a pooled connection of the token request
// carries over to ordinary fetches.
func TestRealmOnlyForTokens(t *testing.T) {
	var tokens, others, conns atomic.Int64
	realm := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			tokens.Add(1)
			io.WriteString(w, `{"token":"tok-1"}`)
			return
		}
		others.Add(1)
		w.Write(content)
	}))
	realm.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	realm.Start()
	t.Cleanup(realm.Close)
	_, realmPort := splitAddr(t, realm.Listener.Addr().String())
	realmHost := "localhost:" + realmPort

	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+realmHost+`/token",service="s"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.Path, "/blobs/") {
			http.Redirect(w, r, "http://"+realmHost+"/blob", http.StatusTemporaryRedirect)
			return
		}
		w.Write(content)
	}))
	t.Cleanup(reg.Close)
	c := newClient(t, Config{RegistryURLs: map[string]string{testRegistry: reg.URL}, AllowRealms: []string{realmHost}})

	resp, err := c.Fetch(t.Context(), manifestRequest("GET", "v1"))
	if err != nil {
		t.Fatalf("manifest with a token from the allowed realm: %v", err)
	}
	readBody(t, resp)
	_, err = c.Fetch(t.Context(), blobRequest("GET", content))
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || !errors.Is(err, ErrRefused) {
		t.Errorf("blob redirected to the realm: %v, want 403 wrapping ErrRefused", err)
	}
	if tokens.Load() != 1 || others.Load() != 0 || conns.Load() != 1 {
		t.Errorf("realm saw %d token requests, %d others, on %d connections; want 1, 0, 1", tokens.Load(), others.Load(), conns.Load())
	}
}

// TestRedirectToPrivateAddressRefused: a redirect to a loopback address
// that is not exactly trusted is refused before it is dialled, whether the
// CDN is on another host name (127.0.0.1) or on another port of the mapped
// registry's own host (localhost).
func TestRedirectToPrivateAddressRefused(t *testing.T) {
	for _, cdn := range []string{"127.0.0.1", "localhost"} {
		t.Run("CDN on "+cdn, func(t *testing.T) {
			opts := registrytest.Options{Token: true, Redirect: true, CDNHostname: cdn}
			reg, c := fakeRegistry(t, opts, Config{AllowedHosts: []string{}})
			img := seed(t, reg, "team/app", "v1")
			_, err := c.Fetch(t.Context(), blobOf(img.repo, img.blobs[0]))
			if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied || !errors.Is(err, ErrRefused) {
				t.Fatalf("Fetch = %v, want 403 DENIED wrapping ErrRefused", err)
			}
			if n := reg.Count("", registrytest.KindCDN, ""); n != 0 {
				t.Errorf("CDN requests = %d, want 0", n)
			}
		})
	}
}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		entry, host, port string
	}{
		{"Registry.Internal", "registry.internal", "443"},
		{"registry.internal:5000", "registry.internal", "5000"},
		{"10.0.0.5", "10.0.0.5", "443"},
		{"[::1]:5000", "::1", "5000"},
		{"[0::1]", "::1", "443"},
		{"::1", "::1", "443"},
		{"localhost:80", "localhost", "80"},
	}
	for _, tt := range tests {
		host, port, err := parseHostPort(tt.entry, "443")
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("parseHostPort(%q) = %q, %q, %v; want %q, %q", tt.entry, host, port, err, tt.host, tt.port)
		}
	}
	for _, bad := range []string{"", ":5000", "http://x", "x/y", "x:0", "x:65536", "x:+1", "x:05", "x:", "[::1", "a..b", "a_b", "a b"} {
		if h, p, err := parseHostPort(bad, "443"); err == nil {
			t.Errorf("parseHostPort(%q) = %q, %q, want an error", bad, h, p)
		}
	}
}
