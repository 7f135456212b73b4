package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

func TestNonPublic(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"192.168.1.1", "private"},
		{"fd00::1", "private"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this network"},
		{"224.0.0.1", "link-local"},
		{"239.1.1.1", "multicast"},
		{"ff05::1", "multicast"},
		{"198.18.0.1", "benchmarking"},
		{"255.255.255.255", "reserved"},
		{"64:ff9b::a00:1", "private"}, // NAT64 of 10.0.0.1
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::808:808", ""},           // NAT64 of 8.8.8.8
		{"2002:a00:1::1", "private"},       // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::", "link-local"}, // 6to4 of 169.254.169.254
		{"2002:808:808::1", ""},            // 6to4 of 8.8.8.8
		{"::7f00:1", "IPv4-compatible"},    // 127.0.0.1
		{"::a00:1", "IPv4-compatible"},
		{"64:ff9b:1::a00:1", "local NAT64"},
		{"fec0::1", "site-local"},
		{"2001:db8::1", "documentation"},
		{"192.0.2.1", "documentation"},
		{"100::1", "discard"},
		{"fd00:ec2::254", "private"}, // a cloud metadata address over IPv6
	}
	for _, tt := range tests {
		if got := nonPublic(net.ParseIP(tt.ip)); got != tt.want {
			t.Errorf("nonPublic(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

func TestIPLike(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "2130706433": true, "127.1": true, "0x7f000001": true, "10.0.0.010": true,
		"ghcr.io": false, "localhost": false, "registry-1.docker.io": false, "1password.com": false, "a.0b": false,
	} {
		if got := ipLike(host); got != want {
			t.Errorf("ipLike(%q) = %v, want %v", host, got, want)
		}
	}
}

// countingServer counts the requests h receives.
func countingServer(t *testing.T, tlsServer bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write(content)
	})
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestDialPolicy(t *testing.T) {
	srv, served := countingServer(t, true)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tlsConfig := &tls.Config{RootCAs: roots}
	// httptest's certificate is for example.com and 127.0.0.1; the test
	// resolver sends example.com to the server.
	resolver := fakeResolver{"example.com": {"127.0.0.1"}, "localhost": {"127.0.0.1"}, "mixed.test": {"10.0.0.1", "127.0.0.1"}}

	tests := []struct {
		name     string
		registry string
		cfg      Config
		want     error // nil: the fetch succeeds
	}{
		{"IP literal", "127.0.0.1:" + port, Config{}, ErrRefused},
		{"IPv6 literal", "[::1]:" + port, Config{}, ErrRefused},
		{"IP literal with AllowPrivate", "127.0.0.1:" + port, Config{AllowPrivate: true}, ErrRefused},
		{"numeric host name", "2130706433:" + port, Config{}, ErrRefused},
		{"localhost", "localhost:" + port, Config{}, ErrRefused},
		{"name resolving to loopback", "example.com:" + port, Config{}, ErrRefused},
		{"name resolving only to private addresses", "mixed.test:" + port, Config{}, ErrRefused},
		{"name resolving to loopback, AllowPrivate", "example.com:" + port, Config{AllowPrivate: true}, nil},
		{"allowed host is on 443 only", "example.com:" + port, Config{AllowedHosts: []string{"EXAMPLE.com"}}, ErrRefused},
		{"allowed IP literal is on 443 only", "127.0.0.1:" + port, Config{AllowedHosts: []string{"127.0.0.1"}}, ErrRefused},
		{"unknown name", "example.invalid:" + port, Config{}, oci.ErrUpstreamUnavailable},
		{"name under .localhost", "registry.localhost:" + port, Config{AllowPrivate: true}, ErrRefused},
		{"allowed host:port", "example.com:" + port, Config{AllowedHosts: []string{"EXAMPLE.com:" + port}}, nil},
		{"allowed host, other port", "example.com:" + port, Config{AllowedHosts: []string{"example.com:1"}}, ErrRefused},
		{"allowed IP literal:port", "127.0.0.1:" + port, Config{AllowedHosts: []string{"127.0.0.1:" + port}}, nil},
		// Past the policy; the test certificate does not name localhost.
		{"allowed localhost:port", "localhost:" + port, Config{AllowedHosts: []string{"localhost:" + port}}, oci.ErrUpstreamUnavailable},
		{"allowed realm is no registry", "example.com:" + port, Config{AllowRealms: []string{"example.com:" + port}}, ErrRefused},
		{"allowed realm host on another port", "example.com:" + port, Config{AllowRealms: []string{"example.com"}}, ErrRefused},
		{"mapped host on another port", "example.com:" + port, Config{RegistryURLs: map[string]string{"docker.io": "https://example.com:1"}}, ErrRefused},
		{"mapped address under another name", "example.com:" + port, Config{RegistryURLs: map[string]string{"docker.io": "https://example.com:" + port}}, ErrRefused},
		{"mapped name", "docker.io", Config{RegistryURLs: map[string]string{"docker.io": "https://example.com:" + port}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := served.Load()
			cfg := tt.cfg
			cfg.Resolver, cfg.TLSConfig = resolver, tlsConfig
			c := newClient(t, cfg)
			req := blobRequest("GET", content)
			req.Registry = tt.registry
			resp, err := c.Fetch(t.Context(), req)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if body := readBody(t, resp); body != string(content) {
					t.Errorf("body %q", body)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Fetch = %v, want %v", err, tt.want)
			}
			if errors.Is(err, ErrRefused) {
				if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied {
					t.Errorf("refusal = %v, want 403 DENIED", err)
				}
			}
			if n := served.Load() - before; n != 0 {
				t.Errorf("the server saw %d requests, want 0", n)
			}
		})
	}
}

func TestRealmPolicy(t *testing.T) {
	// A mapped registry is trusted, but the realm it names is not: a realm
	// that resolves to a private address is refused, whoever names it.
	tokens, tokenRequests := countingServer(t, false)
	_, tokenPort, _ := net.SplitHostPort(tokens.Listener.Addr().String())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://token.test:`+tokenPort+`/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, Config{
		RegistryURLs: map[string]string{testRegistry: srv.URL},
		Resolver:     fakeResolver{"token.test": {"127.0.0.1"}},
	})
	_, err := c.Fetch(t.Context(), blobRequest("GET", content))
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch = %v, want 403 wrapping ErrRefused", err)
	}
	if n := tokenRequests.Load(); n != 0 {
		t.Errorf("token server saw %d requests, want 0", n)
	}
}

func TestRedirectDowngradeRefused(t *testing.T) {
	plain, plainRequests := countingServer(t, false)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		http.Redirect(w, r, plain.URL+"/blob", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := newClient(t, Config{
		RegistryURLs: map[string]string{testRegistry: srv.URL},
		AllowedHosts: []string{plain.Listener.Addr().String()},
		TLSConfig:    &tls.Config{RootCAs: roots},
	})
	_, err := c.Fetch(t.Context(), blobRequest("GET", content))
	if !errors.Is(err, errDowngrade) {
		t.Fatalf("Fetch = %v, want the https→http redirect refused", err)
	}
	if n := plainRequests.Load(); n != 0 {
		t.Errorf("http server saw %d requests, want 0", n)
	}
}
