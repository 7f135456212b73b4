package upstream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

func TestRealmAllowed(t *testing.T) {
	tests := []struct {
		registry, realm string
		want            bool
	}{
		{"registry-1.docker.io", "auth.docker.io", true}, // Docker Hub
		{"ghcr.io", "ghcr.io", true},
		{"registry.gitlab.com", "gitlab.com", true},
		{"REGISTRY.example.com", "auth.Example.com", true},
		{"localhost", "localhost", true},
		{"127.0.0.1", "127.0.0.1", true},
		{"::1", "[::1]", true},
		{"registry-1.docker.io", "docker.io.evil.example", false},
		{"registry-1.docker.io", "evildocker.io", false},
		{"registry.example.co.uk", "evil.co.uk", false}, // a public suffix is no common domain
		{"alice.github.io", "mallory.github.io", false}, // nor is a shared hosting suffix
		{"registry.example.com", "metadata.google.internal", false},
		{"127.0.0.1", "127.0.0.2", false},
		{"127.0.0.1", "localhost", false},
		{"registry.example.com", "1.2.3.4", false},
		{"localhost", "evil.localhost", false},
		{"registry.example.com", "", false},
		{"com", "evil.com", false},
	}
	for _, tt := range tests {
		if got := realmAllowed(tt.registry, tt.realm); got != tt.want {
			t.Errorf("realmAllowed(%q, %q) = %v, want %v", tt.registry, tt.realm, got, tt.want)
		}
	}
}

// TestAllowedRealmIsExact: an allowed realm is its host on exactly its
// port, a missing port meaning the default port of the realm URL's scheme.
func TestAllowedRealmIsExact(t *testing.T) {
	p, err := newRealmPolicy([]string{"Auth.Vendor.example", "token.test:5001", "[::1]:5002"})
	if err != nil {
		t.Fatal(err)
	}
	for realm, want := range map[string]bool{
		"https://auth.vendor.example/token":      true,
		"http://auth.vendor.example/token":       true,
		"https://auth.vendor.example:443/token":  true,
		"http://auth.vendor.example:80/token":    true,
		"https://auth.vendor.example:8443/token": false,
		"http://auth.vendor.example:443/token":   false, // 443 is not http's default
		"https://auth.vendor.example:80/token":   false,
		"http://token.test:5001/token":           true,
		"https://token.test:5001/token":          true,
		"http://token.test/token":                false,
		"http://token.test:5000/token":           false,
		"http://[::1]:5002/token":                true,
		"http://[0::1]:5002/token":               true,
		"http://[::1]:5003/token":                false,
		"https://other.vendor.example/token":     false,
	} {
		u, err := url.Parse(realm)
		if err != nil {
			t.Fatal(err)
		}
		err = p.check("r", "registry.example.com", u)
		if want && err != nil {
			t.Errorf("%s refused: %v", realm, err)
		}
		if !want && !errors.Is(err, ErrRefused) {
			t.Errorf("%s = %v, want ErrRefused", realm, err)
		}
	}
	for _, bad := range []string{"", "https://auth.vendor.example", "auth.vendor.example/token", "host:0", "host:65536", "host:x", "host:", "a..b", "user@host"} {
		if _, err := newRealmPolicy([]string{bad}); err == nil {
			t.Errorf("allowed realm %q accepted", bad)
		}
		if _, err := New(Config{AllowRealms: []string{bad}}); err == nil {
			t.Errorf("New accepted allowed realm %q", bad)
		}
		if _, err := New(Config{AllowedHosts: []string{bad}}); err == nil {
			t.Errorf("New accepted allowed host %q", bad)
		}
	}
}

// tokenRegistry serves a registry on host registryHost (resolved to
// 127.0.0.1 by the test resolver) whose challenge names the realm
// http://<realmHost>:<token server port>/token, and a token server that
// counts its requests. The registry serves content to any Bearer token.
func tokenRegistry(t *testing.T, realmHost string) (registryURL string, tokenPort string, tokens *atomic.Int64) {
	t.Helper()
	tokens = new(atomic.Int64)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens.Add(1)
		io.WriteString(w, `{"token":"tok-1"}`)
	}))
	t.Cleanup(ts.Close)
	_, tokenPort, _ = net.SplitHostPort(ts.Listener.Addr().String())
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+net.JoinHostPort(realmHost, tokenPort)+`/token",service="s"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write(content)
	}))
	t.Cleanup(reg.Close)
	_, port, _ := net.SplitHostPort(reg.Listener.Addr().String())
	return "http://registry.example.com:" + port, tokenPort, tokens
}

// TestRealmMustBelongToRegistry: cacheyd asks a realm for a token only on
// the registry's host or registrable domain, or an allowed host; any other
// realm is refused before it is asked (the token server sees nothing),
// however the dial policy would judge its address.
func TestRealmMustBelongToRegistry(t *testing.T) {
	resolver := fakeResolver{
		"registry.example.com": {"127.0.0.1"}, "auth.example.com": {"127.0.0.1"},
		"auth.other.test": {"127.0.0.1"},
	}
	tests := []struct {
		name      string
		realmHost string
		cfg       func(tokenAddr string) Config
		wantOK    bool
	}{
		{"registry's own host, another port", "registry.example.com", func(string) Config { return Config{} }, false},
		{"registry's own host, another port, allowed realm", "registry.example.com",
			func(a string) Config { return Config{AllowRealms: []string{a}} }, true},
		{"same registrable domain", "auth.example.com", func(string) Config { return Config{AllowPrivate: true} }, true},
		{"another domain, though dialable", "auth.other.test",
			func(a string) Config { return Config{AllowedHosts: []string{a}} }, false},
		{"another domain, allowed realm", "auth.other.test",
			func(a string) Config { return Config{AllowRealms: []string{a}} }, true},
		{"another domain, allowed realm on another port", "auth.other.test",
			func(string) Config { return Config{AllowRealms: []string{"auth.other.test"}} }, false},
		{"same domain, private address", "auth.example.com", func(string) Config { return Config{} }, false}, // the dial policy still applies
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, tokenPort, tokens := tokenRegistry(t, tt.realmHost)
			cfg := tt.cfg(net.JoinHostPort(tt.realmHost, tokenPort))
			cfg.RegistryURLs = map[string]string{testRegistry: url}
			cfg.Resolver = resolver
			c := newClient(t, cfg)
			resp, err := c.Fetch(t.Context(), blobRequest("GET", content))
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if body := readBody(t, resp); body != string(content) {
					t.Errorf("body %q", body)
				}
				if n := tokens.Load(); n != 1 {
					t.Errorf("token requests = %d, want 1", n)
				}
				return
			}
			e, ok := oci.AsError(err)
			if !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied || !errors.Is(err, ErrRefused) {
				t.Fatalf("Fetch = %v, want 403 DENIED wrapping ErrRefused", err)
			}
			if n := tokens.Load(); n != 0 {
				t.Errorf("token server saw %d requests, want 0", n)
			}
		})
	}
}

// TestRegistrytestRealm runs the realm rule against the fake registry,
// whose realm is http://localhost:<port>/token: fetched as localhost, the
// realm is the registry's own host; fetched by IP address, localhost is
// another host and is refused, unless allowed.
func TestRegistrytestRealm(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{Token: true})
	img := seed(t, reg, "team/app", "v1")
	_, port, _ := net.SplitHostPort(reg.Host())
	tests := []struct {
		name   string
		url    string
		realms []string
		wantOK bool
	}{
		{"by name", reg.URL(), nil, true},
		{"by address", "http://127.0.0.1:" + port, nil, false},
		{"by address, realm allowed", "http://127.0.0.1:" + port, []string{"localhost:" + port}, true},
		{"by address, realm allowed on another port", "http://127.0.0.1:" + port, []string{"localhost"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg.Reset()
			c := newClient(t, Config{RegistryURLs: map[string]string{testRegistry: tt.url}, AllowRealms: tt.realms})
			err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest)
			tokens := reg.Count("GET", registrytest.KindToken, "")
			if tt.wantOK {
				if err != nil || tokens != 1 {
					t.Fatalf("Fetch = %v with %d token requests, want success with 1", err, tokens)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || tokens != 0 {
				t.Fatalf("Fetch = %v with %d token requests, want ErrRefused with none", err, tokens)
			}
		})
	}
}

// TestRegistriesList: with Config.Registries, any other registry is
// refused 403 DENIED before anything is dialled, even one that is mapped.
func TestRegistriesList(t *testing.T) {
	srv, served := countingServer(t, false)
	c := newClient(t, Config{
		RegistryURLs: map[string]string{testRegistry: srv.URL, "other.test": srv.URL},
		Registries:   []string{testRegistry},
	})
	if resp, err := c.Fetch(t.Context(), blobRequest("GET", content)); err != nil {
		t.Fatalf("listed registry: %v", err)
	} else {
		readBody(t, resp)
	}
	before := served.Load()
	req := blobRequest("GET", content)
	req.Registry = "other.test"
	_, err := c.Fetch(t.Context(), req)
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied {
		t.Fatalf("unlisted registry: %v, want 403 DENIED", err)
	}
	if n := served.Load() - before; n != 0 {
		t.Errorf("upstream saw %d requests for the unlisted registry, want 0", n)
	}
	if _, err := New(Config{Registries: []string{"not a host"}}); err == nil {
		t.Error("New accepted an invalid registry list")
	}
}

// TestManifestSizeLimit: a manifest over 4 MiB is refused by its announced
// size before its body is read, and by its bytes when its size is unknown;
// blobs have no such limit.
func TestManifestSizeLimit(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, oci.MaxManifestSize+1)
	exact := big[:oci.MaxManifestSize]
	var sent atomic.Int64
	c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		body := exact
		if strings.Contains(r.URL.Path, "/big") || strings.Contains(r.URL.Path, "/blobs/") {
			body = big
		}
		if strings.HasSuffix(r.URL.Path, "-chunked") {
			// Flushing before the end sends no Content-Length.
			w.Write(body[:1])
			w.(http.Flusher).Flush()
			n, _ := w.Write(body[1:])
			sent.Add(int64(n + 1))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			n, _ := w.Write(body)
			sent.Add(int64(n))
		}
	})
	tooLarge := func(err error) bool {
		e, ok := oci.AsError(err)
		return ok && e.Status == http.StatusRequestEntityTooLarge && e.Code == oci.CodeSizeInvalid
	}
	for _, method := range []string{"HEAD", "GET"} {
		_, err := c.Fetch(t.Context(), manifestRequest(method, "big"))
		if !tooLarge(err) {
			t.Errorf("%s of an announced 4 MiB + 1 manifest: %v, want 413 SIZE_INVALID", method, err)
		}
	}
	resp, err := c.Fetch(t.Context(), manifestRequest("GET", "big-chunked"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !tooLarge(err) || len(got) != oci.MaxManifestSize {
		t.Errorf("chunked 4 MiB + 1 manifest: read %d bytes, %v; want %d bytes, then 413", len(got), err, oci.MaxManifestSize)
	}
	for _, tag := range []string{"exact", "exact-chunked"} {
		resp, err := c.Fetch(t.Context(), manifestRequest("GET", tag))
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if body := readBody(t, resp); len(body) != oci.MaxManifestSize {
			t.Errorf("%s: %d bytes, want %d", tag, len(body), oci.MaxManifestSize)
		}
	}
	resp, err = c.Fetch(t.Context(), blobRequest("GET", big))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); len(body) != len(big) {
		t.Errorf("blob: %d bytes, want %d", len(body), len(big))
	}
}

// TestRegistryLabelsBounded: registries named by clients cannot grow the
// metric label's values without bound: configured ones have their own,
// others only after serving content, and at most maxRegistryLabels.
func TestRegistryLabelsBounded(t *testing.T) {
	l := newRegistryLabels([]string{"docker.io"})
	if got := l.of("docker.io"); got != "docker.io" {
		t.Errorf("configured registry labelled %q", got)
	}
	if got := l.of("ghcr.io"); got != otherRegistryLabel {
		t.Errorf("registry that served nothing labelled %q, want %q", got, otherRegistryLabel)
	}
	l.served("ghcr.io")
	if got := l.of("ghcr.io"); got != "ghcr.io" {
		t.Errorf("registry that served content labelled %q", got)
	}
	for i := range 2 * maxRegistryLabels {
		l.served("r" + strconv.Itoa(i) + ".example")
	}
	labels := map[string]bool{}
	for i := range 2 * maxRegistryLabels {
		labels[l.of("r"+strconv.Itoa(i)+".example")] = true
	}
	if len(labels) != maxRegistryLabels { // maxRegistryLabels-1 names and "other"
		t.Errorf("%d distinct labels, want %d", len(labels), maxRegistryLabels)
	}
	if !labels[otherRegistryLabel] {
		t.Error("registries past the bound are not labelled other")
	}
}
