package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// Every httptest TLS server presents the same certificate, for
// example.com, *.example.com, 127.0.0.1 and ::1, so these tests name
// their servers under example.com (resolved to 127.0.0.1 by the test
// resolver) or by IP address, and a registry a client names is fetched
// over https as it would be.

// scopeResolver sends every name the scope tests use to loopback.
var scopeResolver = fakeResolver{
	"public.example.com": {"127.0.0.1"}, "evil.example.com": {"127.0.0.1"},
	"internal.example.com": {"127.0.0.1"}, "blobs.example.com": {"127.0.0.1"},
}

// internalRegistry is the registry name the tests map to an internal address.
const internalRegistry = "internal.test"

// tlsRegistry serves h over https on 127.0.0.1. It returns its port and a
// TLS configuration that trusts the certificate every httptest TLS server
// shares.
func tlsRegistry(t *testing.T, h http.Handler) (port string, tlsConfig *tls.Config) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return port, &tls.Config{RootCAs: roots}
}

// tlsRedirectingRegistry is redirectingRegistry over https (tlsRegistry).
func tlsRedirectingRegistry(t *testing.T, target string) (port string, tlsConfig *tls.Config) {
	t.Helper()
	return tlsRegistry(t, redirectTo(target))
}

// wantUnreached fetches a blob of registry with c and fails the test unless
// it is refused 403 DENIED and l, the listener of what a hostile registry
// pointed cacheyd at, accepted no connection.
func wantUnreached(t *testing.T, c *Client, registry string, l *registrytest.CountingListener) {
	t.Helper()
	req := blobRequest("GET", content)
	req.Registry = registry
	resp, err := c.Fetch(t.Context(), req)
	if err == nil {
		readBody(t, resp)
	}
	wantRefused(t, err)
	if n, err := l.Accepted(t.Context()); err != nil || n != 0 {
		t.Errorf("the listener accepted %d connections (%v), want 0", n, err)
	}
}

// wantRefused fails the test unless err is a 403 DENIED wrapping ErrRefused.
func wantRefused(t *testing.T, err error) {
	t.Helper()
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied || !errors.Is(err, ErrRefused) {
		t.Errorf("got %v, want 403 DENIED wrapping ErrRefused", err)
	}
}

// TestRedirectToAMappedAddressRefused: a mapped URL's address is trusted
// for its own registry's fetches only. A registry a client names (one that
// looks public: here its name reaches loopback only under AllowPrivate), an
// allowed registry, by name or IP address, and another mapped registry,
// each redirecting a blob GET to the mapped registry's address (its
// catalog), by IP address or by name, are refused 403 DENIED, and the
// mapped registry's listener accepts no connection.
func TestRedirectToAMappedAddressRefused(t *testing.T) {
	tests := []struct {
		name           string
		internalByName bool // mapped as https://internal.example.com:<port>, else https://127.0.0.1:<port>
		// reach returns the registry the request names and the Config
		// that reaches the redirecting registry on hostilePort.
		reach func(hostilePort string) (string, Config)
	}{
		{"registry a client named, to the mapped IP address", false, named},
		{"registry a client named, to the mapped host name", true, named},
		{"allowed registry, to the mapped IP address", false, allowedByName},
		{"allowed registry, to the mapped host name", true, allowedByName},
		{"allowed registry by IP address, to the mapped IP address", false, allowedByIP},
		{"allowed registry by IP address, to the mapped host name", true, allowedByIP},
		{"another mapped registry, to the mapped IP address", false, mappedByIP},
		{"another mapped registry, to the mapped host name", true, mappedByIP},
		{"another mapped registry by name, to the mapped IP address", false, mappedByName},
		{"another mapped registry by name, to the mapped host name", true, mappedByName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			internal := registrytest.NewCountingListener(t)
			internalURL := "https://127.0.0.1:" + internal.Port()
			if tt.internalByName {
				internalURL = "https://internal.example.com:" + internal.Port()
			}
			port, tlsConfig := tlsRedirectingRegistry(t, internalURL+"/v2/_catalog")
			registry, cfg := tt.reach(port)
			if cfg.RegistryURLs == nil {
				cfg.RegistryURLs = map[string]string{}
			}
			cfg.RegistryURLs[internalRegistry] = internalURL
			cfg.Resolver, cfg.TLSConfig = scopeResolver, tlsConfig
			wantUnreached(t, newClient(t, cfg), registry, internal)
		})
	}
}

// The ways tests reach a registry on hostilePort: the registry name the
// request gives and the Config that lets it be dialled at loopback.
func named(hostilePort string) (string, Config) {
	return "public.example.com:" + hostilePort, Config{AllowPrivate: true}
}

func allowedByName(hostilePort string) (string, Config) {
	r := "evil.example.com:" + hostilePort
	return r, Config{AllowedHosts: []string{r}}
}

func allowedByIP(hostilePort string) (string, Config) {
	r := "127.0.0.1:" + hostilePort
	return r, Config{AllowedHosts: []string{r}}
}

func mappedByIP(hostilePort string) (string, Config) {
	return testRegistry, Config{RegistryURLs: map[string]string{testRegistry: "https://127.0.0.1:" + hostilePort}}
}

func mappedByName(hostilePort string) (string, Config) {
	return testRegistry, Config{RegistryURLs: map[string]string{testRegistry: "https://evil.example.com:" + hostilePort}}
}

// TestPooledConnectionStaysWithItsRegistry: a connection to a mapped
// registry, left idle in the pool by its own fetch, is not reused by
// another registry's redirect to the same address, which is refused before
// a connection is looked for: the mapped registry sees no request.
func TestPooledConnectionStaysWithItsRegistry(t *testing.T) {
	for _, byName := range []bool{false, true} {
		t.Run(map[bool]string{false: "by IP address", true: "by name"}[byName], func(t *testing.T) {
			internal, served := countingServer(t, true)
			_, internalPort, _ := net.SplitHostPort(internal.Listener.Addr().String())
			internalURL := "https://127.0.0.1:" + internalPort
			if byName {
				internalURL = "https://internal.example.com:" + internalPort
			}
			port, tlsConfig := tlsRedirectingRegistry(t, internalURL+"/v2/_catalog")
			registry, cfg := named(port)
			cfg.RegistryURLs = map[string]string{internalRegistry: internalURL}
			cfg.Resolver, cfg.TLSConfig = scopeResolver, tlsConfig
			c := newClient(t, cfg)

			own := blobRequest("GET", content)
			own.Registry = internalRegistry
			resp, err := c.Fetch(t.Context(), own)
			if err != nil {
				t.Fatalf("the mapped registry's own fetch: %v", err)
			}
			// Read to the end: the connection is idle in the pool once the
			// body has reported its end.
			readBody(t, resp)
			before := served.Load()

			req := blobRequest("GET", content)
			req.Registry = registry
			resp, err = c.Fetch(t.Context(), req)
			if err == nil {
				readBody(t, resp)
			}
			wantRefused(t, err)
			if n := served.Load() - before; n != 0 {
				t.Errorf("the mapped registry saw %d requests from another registry's redirect, want 0", n)
			}
		})
	}
}

// TestRedirectToAnAllowedAddressRefusedForANamedRegistry: an allowed
// address (an internal blob store) is a redirect target only for registries
// the operator trusts. A registry a client merely named that redirects
// there, by IP address or by name, is refused 403 DENIED and the store's
// listener accepts no connection, even under AllowPrivate.
func TestRedirectToAnAllowedAddressRefusedForANamedRegistry(t *testing.T) {
	for _, storeHost := range []string{"127.0.0.1", "blobs.example.com"} {
		t.Run("store "+storeHost, func(t *testing.T) {
			store := registrytest.NewCountingListener(t)
			storeAddr := net.JoinHostPort(storeHost, store.Port())
			port, tlsConfig := tlsRedirectingRegistry(t, "https://"+storeAddr+"/blob")
			registry, cfg := named(port)
			cfg.AllowedHosts = []string{storeAddr}
			cfg.Resolver, cfg.TLSConfig = scopeResolver, tlsConfig
			wantUnreached(t, newClient(t, cfg), registry, store)
		})
	}
}

// TestRedirectToAnAllowedAddressForTrustedRegistries: a registry the
// operator trusts, mapped or allowed, by IP address or by name, follows its
// redirect to an allowed address (its blob store), by IP address or by
// name.
func TestRedirectToAnAllowedAddressForTrustedRegistries(t *testing.T) {
	store, served := countingServer(t, true)
	_, storePort, _ := net.SplitHostPort(store.Listener.Addr().String())
	tests := []struct {
		name  string
		reach func(port string) (string, Config)
	}{
		{"mapped by IP address", mappedByIP},
		{"mapped by name", mappedByName},
		{"allowed by name", allowedByName},
		{"allowed by IP address", allowedByIP},
	}
	for _, tt := range tests {
		for _, storeHost := range []string{"127.0.0.1", "blobs.example.com"} {
			t.Run(tt.name+", store "+storeHost, func(t *testing.T) {
				storeAddr := net.JoinHostPort(storeHost, storePort)
				port, tlsConfig := tlsRedirectingRegistry(t, "https://"+storeAddr+"/blob")
				registry, cfg := tt.reach(port)
				cfg.AllowedHosts = append(cfg.AllowedHosts, storeAddr)
				cfg.Resolver, cfg.TLSConfig = scopeResolver, tlsConfig
				c := newClient(t, cfg)
				before := served.Load()
				req := blobRequest("GET", content)
				req.Registry = registry
				resp, err := c.Fetch(t.Context(), req)
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if body := readBody(t, resp); body != string(content) {
					t.Errorf("body %q", body)
				}
				if n := served.Load() - before; n != 1 {
					t.Errorf("the store saw %d requests, want 1", n)
				}
			})
		}
	}
}

// TestDialerJudgesByScope: the fetch dialer itself dials a mapped address
// only for a fetch of the registry it is mapped for; for another
// registry's fetch, or a context that names none, it refuses before
// connecting.
func TestDialerJudgesByScope(t *testing.T) {
	tests := []struct {
		name     string
		registry string // the fetch's registry; empty: no scope in the context
		want     bool
	}{
		{"its own registry", internalRegistry, true},
		{"another registry", "public.example.com", false},
		{"no registry", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := registrytest.NewCountingListener(t)
			mapped := &url.URL{Scheme: "http", Host: ln.Addr()}
			tr, err := newTrust(map[string]*url.URL{internalRegistry: mapped}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := newDialer(Config{Resolver: scopeResolver}.withDefaults(), fetchJudge(tr))
			ctx := t.Context()
			if tt.registry != "" {
				base := &url.URL{Scheme: "https", Host: tt.registry}
				if tt.registry == internalRegistry {
					base = mapped
				}
				ctx = withScope(ctx, tr.scopeOf(target{registry: tt.registry, base: base}))
			}
			conn, err := d.DialContext(ctx, "tcp", ln.Addr())
			if err == nil {
				conn.Close()
			}
			if tt.want {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if err := ln.WaitAccepted(t.Context(), 1); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantRefused(t, err)
			if n, err := ln.Accepted(t.Context()); err != nil || n != 0 {
				t.Errorf("the listener accepted %d connections (%v), want 0", n, err)
			}
		})
	}
}

// TestRealmOnANamedAddressOnlyInScope: a token realm is a place cacheyd
// sends a request to, so an address the operator named is a realm only for
// the fetches it is trusted for. A registry a client names whose challenge
// points its realm at a mapped internal registry on its own registrable
// domain (evil.example.com → internal.example.com), by name, gets no token
// request sent there: the internal listener accepts no connection. The
// mapped registry's own realm on its own address still works.
func TestRealmOnANamedAddressOnlyInScope(t *testing.T) {
	internal := registrytest.NewCountingListener(t)
	internalURL := "https://internal.example.com:" + internal.Port()
	port, tlsConfig := tlsRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+internalURL+`/token",service="evil"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	c := newClient(t, Config{AllowPrivate: true, Resolver: scopeResolver, TLSConfig: tlsConfig,
		RegistryURLs: map[string]string{internalRegistry: internalURL}})
	req := blobRequest("GET", content)
	req.Registry = "evil.example.com:" + port
	if resp, err := c.Fetch(t.Context(), req); err == nil {
		readBody(t, resp)
		t.Fatal("a registry that answers only 401 served content")
	}
	if n, err := internal.Accepted(t.Context()); err != nil || n != 0 {
		t.Errorf("the mapped registry's listener accepted %d connections (%v) for another registry's token, want 0", n, err)
	}
}
