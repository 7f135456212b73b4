package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// Every test here stays on loopback and resolves no name: a registry a
// request names is either mapped with --registry-url (to 127.0.0.1 or
// localhost) or refused before any lookup.

// secureFlags are the flags of a test cacheyd: loopback, a temporary cache
// directory, upstream mapped as given.
func secureFlags(t *testing.T, urls map[string]string) serveFlags {
	return serveFlags{
		Listen: "127.0.0.1:0", CacheDir: t.TempDir(), MemoryBytes: 16 << 20, MemoryMaxObject: 1 << 20,
		DiskBytes: 1 << 30, DefaultRegistry: "docker.io", ShutdownTimeout: testShutdown,
		LogLevel: "info", LogFormat: "text", RegistryURL: urls,
	}
}

// serveWith runs cacheyd with flags until the test ends and returns its
// base URL ("http://" or "https://" as flags say), or the error it
// stopped with before listening.
func serveWith(t *testing.T, flags serveFlags) (string, error) {
	t.Helper()
	base, stop, err := startFlags(t, flags)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("cacheyd stopped with: %v", err)
		}
	})
	return base, nil
}

// startFlags runs cacheyd with flags in-process, through the one wiring
// (app.Start), and returns its base URL and a stop.
func startFlags(t *testing.T, flags serveFlags) (string, func() error, error) {
	t.Helper()
	cfg, err := flags.Config()
	if err != nil {
		return "", nil, err
	}
	return app.Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
}

func mustServe(t *testing.T, flags serveFlags) string {
	t.Helper()
	base, err := serveWith(t, flags)
	if err != nil {
		t.Fatalf("cacheyd did not start: %v", err)
	}
	return base
}

// ociCode returns the code of an OCI error body, or "".
func ociCode(body []byte) string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 {
		return ""
	}
	return e.Errors[0].Code
}

// TestNoOpenProxy: registries a client names that are addresses of
// cacheyd's own network are refused 403 DENIED, with OCI error JSON, and
// nothing reaches them; a registry allowed with --allow-registry is
// dialled (and then fails here only because it speaks plain HTTP, which
// only --registry-url may choose).
func TestNoOpenProxy(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	up.SeedImage(t, "team/app", "v1", 1, 1000)
	_, port, _ := net.SplitHostPort(up.Host())
	up.Reset()
	base := mustServe(t, secureFlags(t, nil))
	for _, ns := range []string{
		"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "2130706433:" + port, "0x7f000001:" + port,
		"127.1:" + port, "registry.localhost:" + port, "169.254.169.254", "[fd00:ec2::254]", "10.0.0.1", "0.0.0.0:" + port,
	} {
		u := base + "/v2/team/app/manifests/v1?ns=" + url.QueryEscape(ns)
		resp, body := get(t, http.MethodGet, u, nil)
		if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
			t.Errorf("ns=%s: %d %s, want 403 DENIED", ns, resp.StatusCode, body)
		}
	}
	// The same through the path prefix (CRI-O and podman mirrors).
	resp, body := get(t, http.MethodGet, base+"/v2/127.0.0.1:"+port+"/team/app/manifests/v1", nil)
	if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
		t.Errorf("path prefix: %d %s, want 403 DENIED", resp.StatusCode, body)
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("the registry saw %d requests, want 0", n)
	}

	flags := secureFlags(t, nil)
	flags.AllowRegistry = []string{"127.0.0.1:" + port}
	allowedBase := mustServe(t, flags)
	resp, body = get(t, http.MethodGet, allowedBase+"/v2/team/app/manifests/v1?ns=127.0.0.1:"+port, nil)
	if resp.StatusCode != http.StatusBadGateway || ociCode(body) != "UNAVAILABLE" {
		t.Errorf("allowed registry: %d %s, want 502 UNAVAILABLE (dialled over https, answered in plain HTTP)", resp.StatusCode, body)
	}
	// Allowed is that host:port only: not the bare address (port 443),
	// not another port, not localhost on that port.
	bystander := registrytest.NewCountingListener(t)
	for _, ns := range []string{"127.0.0.1", "127.0.0.1:" + bystander.Port(), "localhost:" + port} {
		resp, body := get(t, http.MethodGet, allowedBase+"/v2/team/app/manifests/v1?ns="+url.QueryEscape(ns), nil)
		if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
			t.Errorf("allowed registry, ns=%s: %d %s, want 403 DENIED", ns, resp.StatusCode, body)
		}
	}
	if n, err := bystander.Accepted(t.Context()); err != nil || n != 0 {
		t.Errorf("the listener on %s accepted %d connections (%v), want 0", bystander.Addr(), n, err)
	}
}

// TestRegistriesFlag: with --registries, listed registries are served and
// any other is 403 DENIED before anything is fetched or looked up; a
// default registry off the list is a startup error.
func TestRegistriesFlag(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true})
	dg := up.SeedBlob(t, "team/app", []byte("listed content"))
	flags := secureFlags(t, map[string]string{up.Host(): up.URL()})
	flags.Registries = []string{up.Host()}
	flags.DefaultRegistry = up.Host()
	base := mustServe(t, flags)
	resp, body := get(t, http.MethodGet, base+"/v2/team/app/blobs/"+dg.String()+"?ns="+up.Host(), nil)
	if resp.StatusCode != http.StatusOK || string(body) != "listed content" {
		t.Fatalf("listed registry: %d %s", resp.StatusCode, body)
	}
	for _, target := range []string{
		"/v2/team/app/manifests/v1?ns=ghcr.io",
		"/v2/ghcr.io/team/app/manifests/v1",
		"/v2/team/app/blobs/" + dg.String() + "?ns=docker.io",
	} {
		resp, body := get(t, http.MethodGet, base+target, nil)
		if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
			t.Errorf("%s: %d %s, want 403 DENIED", target, resp.StatusCode, body)
		}
	}
	flags = secureFlags(t, nil)
	flags.Registries = []string{"ghcr.io"}
	if _, err := serveWith(t, flags); err == nil || !strings.Contains(err.Error(), "docker.io") {
		t.Errorf("default registry off the list: %v, want a startup error naming it", err)
	}
}

// TestRealmFlag: a registry whose token realm is on another host is
// refused 403 DENIED, and the realm is never asked, unless --allow-realm
// names it with its port (a realm allowed without one is allowed on its
// scheme's default port only). The fake registry's realm is
// http://localhost:<port>/token; mapped by IP address, localhost is
// another host.
func TestRealmFlag(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true})
	dg := up.SeedBlob(t, "team/app", []byte("realm content"))
	_, port, _ := net.SplitHostPort(up.Host())
	urls := map[string]string{"registry.test": "http://127.0.0.1:" + port}
	target := "/v2/team/app/blobs/" + dg.String() + "?ns=registry.test"
	up.Reset()

	resp, body := get(t, http.MethodGet, mustServe(t, secureFlags(t, urls))+target, nil)
	if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
		t.Errorf("realm on another host: %d %s, want 403 DENIED", resp.StatusCode, body)
	}
	if n := up.Count(http.MethodGet, registrytest.KindToken, ""); n != 0 {
		t.Errorf("token requests = %d, want 0", n)
	}

	flags := secureFlags(t, urls)
	flags.AllowRealm = []string{"localhost"}
	resp, body = get(t, http.MethodGet, mustServe(t, flags)+target, nil)
	if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
		t.Errorf("realm allowed on port 80 only: %d %s, want 403 DENIED", resp.StatusCode, body)
	}
	if n := up.Count(http.MethodGet, registrytest.KindToken, ""); n != 0 {
		t.Errorf("token requests = %d, want 0", n)
	}

	flags = secureFlags(t, urls)
	flags.AllowRealm = []string{"localhost:" + port}
	resp, body = get(t, http.MethodGet, mustServe(t, flags)+target, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "realm content" {
		t.Errorf("allowed realm: %d %s", resp.StatusCode, body)
	}

	flags = secureFlags(t, urls)
	flags.AllowRealm = []string{"http://localhost:" + port}
	if _, err := serveWith(t, flags); err == nil {
		t.Error("a URL accepted as --allow-realm")
	}
}

// TestClientTokenGuard: with a client token (here from the environment, as
// a Secret would give it), /v2 needs X-Cacheyd-Token and nothing is fetched
// without it; with it, a private repository's challenge and the client's
// own Authorization still pass through; health stays open.
func TestClientTokenGuard(t *testing.T) {
	const token = "s3cret-node-token-0123"
	c, _, err := parse(t, nil, map[string]string{"CACHEYD_CLIENT_TOKEN": token, "CACHEYD_GUARD_METRICS": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ClientToken, []string{token}) || !c.GuardMetrics {
		t.Fatalf("from the environment: token %q, guard metrics %v", c.ClientToken, c.GuardMetrics)
	}

	up := registrytest.New(t, registrytest.Options{
		Token: true, Users: map[string]string{"alice": "pw"}, Private: map[string][]string{"team/secret": {"alice"}},
	})
	dg := up.SeedBlob(t, "team/secret", []byte("private bytes"))
	up.Reset()
	flags := secureFlags(t, map[string]string{up.Host(): up.URL()})
	flags.ClientToken, flags.GuardMetrics = c.ClientToken, c.GuardMetrics
	base := mustServe(t, flags)
	target := base + "/v2/team/secret/blobs/" + dg.String() + "?ns=" + up.Host()

	for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer " + token}, {"X-Cacheyd-Token": "wrong-token-0123456789"}} {
		resp, body := get(t, http.MethodGet, target, hdr)
		if resp.StatusCode != http.StatusUnauthorized || ociCode(body) != "UNAUTHORIZED" {
			t.Errorf("%v: %d %s, want 401 UNAUTHORIZED", hdr, resp.StatusCode, body)
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests from unauthenticated clients, want 0", n)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401} {
		if resp, _ := get(t, http.MethodGet, base+path, nil); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// With the token: the registry's own challenge comes back, and the
	// client's Authorization reaches the registry.
	resp, _ := get(t, http.MethodGet, target, map[string]string{"X-Cacheyd-Token": token})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), up.URL()+"/token") {
		t.Fatalf("anonymous with the token: %d %q, want the registry's challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	treq, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, up.URL()+"/token?service=registrytest&scope=repository:team/secret:pull", nil)
	treq.SetBasicAuth("alice", "pw")
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(tresp.Body).Decode(&tok)
	tresp.Body.Close()
	resp, body := get(t, http.MethodGet, target, map[string]string{"X-Cacheyd-Token": token, "Authorization": "Bearer " + tok.Token})
	if resp.StatusCode != http.StatusOK || string(body) != "private bytes" {
		t.Errorf("with the token and credentials: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, http.MethodGet, base+"/metrics", map[string]string{"X-Cacheyd-Token": token}); resp.StatusCode != 200 {
		t.Errorf("/metrics with the token: %d", resp.StatusCode)
	}

	short := secureFlags(t, nil)
	short.ClientToken = []string{"short"}
	if _, err := serveWith(t, short); err == nil {
		t.Error("a 5-character client token was accepted")
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key as PEM
// files and returns their paths and a pool trusting the certificate.
func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return writeSelfSignedFor(t, nil, []net.IP{net.ParseIP("127.0.0.1")})
}

// writeSelfSignedFor is writeSelfSigned for these names and addresses.
func writeSelfSignedFor(t *testing.T, names []string, ips []net.IP) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cacheyd test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: names, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

// TestTLSFlags: --tls-cert and --tls-key serve HTTPS on loopback with a
// certificate made here; one without the other, or a pair that does not
// load, is a startup error.
func TestTLSFlags(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	dg := up.SeedBlob(t, "team/app", []byte("over tls"))
	certFile, keyFile, pool := writeSelfSigned(t)
	flags := secureFlags(t, map[string]string{up.Host(): up.URL()})
	flags.TLSCert, flags.TLSKey = certFile, keyFile
	base := mustServe(t, flags)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(base + "/v2/team/app/blobs/" + dg.String() + "?ns=" + up.Host())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, []byte("over tls")) || resp.TLS == nil {
		t.Errorf("over TLS: %d %q", resp.StatusCode, body)
	}

	for _, pair := range [][2]string{{certFile, ""}, {"", keyFile}, {keyFile, certFile}} {
		f := secureFlags(t, nil)
		f.TLSCert, f.TLSKey = pair[0], pair[1]
		if _, err := serveWith(t, f); err == nil {
			t.Errorf("--tls-cert %q --tls-key %q accepted", pair[0], pair[1])
		}
	}
}

func TestSecurityFlagsParse(t *testing.T) {
	c, _, err := parse(t, []string{
		"--registries", "docker.io,ghcr.io", "--allow-registry", "registry.internal:5000", "--allow-registry", "10.0.0.5",
		"--allow-realm", "auth.vendor.example", "--max-conns-per-ip", "64", "--read-timeout", "10s",
		"--tls-cert", "/x/tls.crt", "--tls-key", "/x/tls.key",
	}, map[string]string{"CACHEYD_MAX_CONNS": "1000"})
	if err != nil {
		t.Fatal(err)
	}
	f := c.serveFlags
	if !slices.Equal(f.Registries, []string{"docker.io", "ghcr.io"}) ||
		!slices.Equal(f.AllowRegistry, []string{"registry.internal:5000", "10.0.0.5"}) ||
		!slices.Equal(f.AllowRealm, []string{"auth.vendor.example"}) ||
		f.MaxConnsPerIP != 64 || f.MaxConns != 1000 || f.ReadTimeout != 10*time.Second ||
		f.TLSCert != "/x/tls.crt" || f.TLSKey != "/x/tls.key" {
		t.Errorf("flags: %+v", f)
	}
	hosts, err := daemon.AllowedHosts([]string{"Registry.Internal:5000", "10.0.0.5", "index.docker.io"})
	if err != nil || !slices.Equal(hosts, []string{"registry.internal:5000", "10.0.0.5", "registry-1.docker.io"}) {
		t.Errorf("allowedHosts = %v, %v", hosts, err)
	}
	if _, err := daemon.AllowedHosts([]string{"http://registry.internal"}); err == nil {
		t.Error("a URL accepted as --allow-registry")
	}
}
