package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// rawRequest sends raw bytes on a new connection to ts and reads one
// response: the path goes to the server exactly as written, unlike with
// net/http's client, which cleans and escapes it.
func rawRequest(t *testing.T, ts *testServer, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := ts.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%.80q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%.80q: body: %v", raw, err)
	}
	return resp, body
}

// TestHostilePathsThroughCache walks hostile requests through the whole
// server into a real cache on a temporary directory, next to a sentinel.
// Every refusal is OCI error JSON with its status; afterwards nothing exists
// outside the cache directory that was not there before, and no file or
// directory name in it holds any text a client sent (every client-chosen
// name, tag and registry below carries the marker "zq").
func TestHostilePathsThroughCache(t *testing.T) {
	root := t.TempDir()
	sentinel := filepath.Join(root, "sentinel")
	if err := os.WriteFile(sentinel, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := origintest.New()
	o.Tag("zqtag", o.Add([]byte(`{"schemaVersion":2,"mediaType":"`+manifestType+`"}`), manifestType))
	bd := o.Add([]byte("zq blob content"), "")
	c := newTestCache(t, o, func(cfg *cache.Config) { cfg.Dir = filepath.Join(root, "cache") })
	ts := startServer(t, Config{}, c)

	hex := strings.Repeat("a", 64)
	long := strings.Repeat("zq", 1100)
	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantCode   string // "" for content
	}{
		{"dot-dot name", "/v2/../../zqescape/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"dot-dot after name", "/v2/zqrepo/../../../zqescape/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"escaped dot-dot", "/v2/zqrepo/..%2f..%2fzqescape/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"escaped slash in name", "/v2/zqrepo%2fzqescape/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"backslashes", `/v2/zqrepo\..\..\zqescape/manifests/zqtag`, 400, oci.CodeNameInvalid},
		{"NUL in name", "/v2/zqrepo%00/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"empty components", "/v2//zqrepo//manifests/zqtag", 400, oci.CodeNameInvalid},
		{"upper case name", "/v2/ZQrepo/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"dot-dot tag", "/v2/zqrepo/manifests/..", 400, oci.CodeManifestInvalid},
		{"escaped dot-dot tag", "/v2/zqrepo/manifests/..%2f..%2fzqescape", 400, oci.CodeManifestInvalid},
		{"tag too long", "/v2/zqrepo/manifests/zq" + strings.Repeat("a", 128), 400, oci.CodeManifestInvalid},
		{"dot-dot digest", "/v2/zqrepo/blobs/sha256:../../zqescape", 404, oci.CodeUnsupported}, // no endpoint
		{"escaped dot-dot digest", "/v2/zqrepo/blobs/sha256:..%2F..%2Fzqescape", 400, oci.CodeDigestInvalid},
		{"digest algorithm outside the spec", "/v2/zqrepo/blobs/sha384:" + hex + hex[:32], 400, oci.CodeDigestInvalid},
		{"digest in upper case", "/v2/zqrepo/blobs/sha256:" + strings.ToUpper(hex), 400, oci.CodeDigestInvalid},
		{"digest too short", "/v2/zqrepo/blobs/sha256:" + hex[:63], 400, oci.CodeDigestInvalid},
		{"ns with a path", "/v2/zqrepo/manifests/zqtag?ns=zq.test%2F..%2Fzqescape", 400, oci.CodeNameInvalid},
		{"ns dot-dot", "/v2/zqrepo/manifests/zqtag?ns=..", 400, oci.CodeNameInvalid},
		{"ns with user info", "/v2/zqrepo/manifests/zqtag?ns=zq@zq.test", 400, oci.CodeNameInvalid},
		{"registry prefix dot-dot", "/v2/zq.test/../zqescape/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"name too long", "/v2/" + strings.Repeat("zq", 130) + "/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"path too long", "/v2/" + long + "/manifests/zqtag", 400, oci.CodeNameInvalid},
		{"upload dot-dot", "/v2/zqrepo/blobs/uploads/../../zqescape", 404, oci.CodeUnsupported},
		{"outside the API", "/zqescape/../v2/", 404, oci.CodeUnsupported},
		// Valid requests, to show that content with client-chosen names
		// and tags is kept by digest only.
		{"manifest by tag", "/v2/zqrepo/zqname/manifests/zqtag?ns=zq.registry.test", 200, ""},
		{"blob by digest", "/v2/zqrepo/zqname/blobs/" + string(bd) + "?ns=zq.registry.test", 200, ""},
		{"unknown tag", "/v2/zqrepo/manifests/zqother", 404, oci.CodeManifestUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawRequest(t, ts, "GET "+tt.target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" || errorCode(t, body) != tt.wantCode {
				t.Errorf("answer %s %s, want OCI error JSON with code %s", ct, body, tt.wantCode)
			}
		})
	}

	// A request line longer than the header limit is refused as a whole.
	resp, body := rawRequest(t, ts, "GET /v2/"+strings.Repeat("zq", 10<<10)+"/manifests/zqtag HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || errorCode(t, body) != oci.CodeSizeInvalid {
		t.Errorf("20 KiB request line: %d %s, want 431 SIZE_INVALID", resp.StatusCode, body)
	}

	// Only the cache directory and the sentinel are in root.
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "cache,sentinel" {
		t.Errorf("root holds %v, want only cache and sentinel", names)
	}
	if b, err := os.ReadFile(sentinel); err != nil || string(b) != "untouched" {
		t.Errorf("sentinel: %q, %v", b, err)
	}
	files := 0
	err = filepath.WalkDir(filepath.Join(root, "cache"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(strings.ToLower(d.Name()), "zq") {
			t.Errorf("%s: a name holding client text", path)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("%s: a symbolic link", path)
		}
		if d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Error("nothing was cached: the valid requests did not reach the disk")
	}
}

// TestRegistriesRefusedBeforeCache: with a registry list, a request for
// another registry, by ?ns= or by path prefix, is 403 DENIED and the cache
// is never asked.
func TestRegistriesRefusedBeforeCache(t *testing.T) {
	fc := newSpy(t, newImage())
	ts := startServer(t, Config{Registries: []string{"docker.io", "ghcr.io"}}, fc)
	tests := []struct {
		target     string
		wantStatus int
	}{
		{"/v2/", 200},
		{"/v2/alpine/manifests/latest", 200}, // the default registry
		{"/v2/org/app/manifests/v1?ns=ghcr.io", 200},
		{"/v2/org/app/manifests/v1?ns=quay.io", 403},
		{"/v2/quay.io/org/app/manifests/v1", 403},
		{"/v2/org/app/blobs/" + string(digestA) + "?ns=registry.internal:5000", 403},
		{"/v2/org/app/manifests/v1?ns=index.docker.io", 200}, // an alias of a listed registry
	}
	for _, tt := range tests {
		fc.reset()
		resp, body, err := ts.do(t, "GET", tt.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: %d %s, want %d", tt.target, resp.StatusCode, body, tt.wantStatus)
		}
		if tt.wantStatus == 403 {
			if errorCode(t, body) != oci.CodeDenied || len(fc.requests()) != 0 {
				t.Errorf("%s: %s with %d cache requests, want DENIED and none", tt.target, body, len(fc.requests()))
			}
		}
	}
	for _, cfg := range []Config{
		{Registries: []string{"ghcr.io"}}, // docker.io, the default, is not listed
		{Registries: []string{"ghcr.io"}, DefaultRegistry: "quay.io"},
		{Registries: []string{"not a host"}},
	} {
		if cfg.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
	}
	if err := (Config{Registries: []string{"ghcr.io"}, DefaultRegistry: "ghcr.io"}).Validate(); err != nil {
		t.Errorf("valid list: %v", err)
	}
}

const testToken = "0123456789abcdef-token"

// TestClientToken: with a client token, /v2 answers 401 UNAUTHORIZED OCI
// JSON without it, whatever the Authorization header holds, and the
// client's Authorization still reaches the cache unaltered with it;
// health stays open, /metrics unless guarded.
func TestClientToken(t *testing.T) {
	for _, guardMetrics := range []bool{false, true} {
		fc := newSpy(t, newImage())
		ts := startServer(t, Config{ClientTokens: []string{"another-token-0123456789", testToken}, GuardMetrics: guardMetrics, Gatherer: prometheus.NewRegistry()}, fc)
		tests := []struct {
			target     string
			header     http.Header
			wantStatus int
		}{
			{"/v2/", nil, 401},
			{"/v2/alpine/manifests/latest", http.Header{"Authorization": {"Bearer " + testToken}}, 401},
			{"/v2/alpine/manifests/latest", http.Header{TokenHeader: {testToken + "x"}}, 401},
			{"/v2/alpine/manifests/latest", http.Header{TokenHeader: {testToken[:len(testToken)-1]}}, 401},
			{"/v2/alpine/manifests/latest", http.Header{TokenHeader: {""}}, 401},
			{"/v2/alpine/blobs/uploads/", http.Header{}, 401}, // before the method is looked at
			{"/v2/", http.Header{TokenHeader: {testToken}}, 200},
			{"/v2/alpine/manifests/latest", http.Header{TokenHeader: {testToken}, "Authorization": {"Bearer registry-credential"}}, 200},
			{"/healthz", nil, 200},
			{"/readyz", nil, 200},
			{"/metrics", nil, map[bool]int{false: 200, true: 401}[guardMetrics]},
			{"/metrics", http.Header{TokenHeader: {testToken}}, 200},
		}
		for _, tt := range tests {
			fc.reset()
			resp, body, err := ts.do(t, "GET", tt.target, tt.header)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("guard metrics %v: GET %s %v: %d, want %d", guardMetrics, tt.target, tt.header, resp.StatusCode, tt.wantStatus)
				continue
			}
			if tt.wantStatus != 401 {
				continue
			}
			if errorCode(t, body) != oci.CodeUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), TokenHeader+" ") {
				t.Errorf("GET %s: %s (challenge %q), want UNAUTHORIZED with the token challenge", tt.target, body, resp.Header.Get("WWW-Authenticate"))
			}
			if n := len(fc.requests()); n != 0 {
				t.Errorf("GET %s: the cache was asked %d times", tt.target, n)
			}
		}
		ts.do(t, "GET", "/v2/alpine/manifests/latest", http.Header{TokenHeader: {testToken}, "Authorization": {"Bearer registry-credential"}})
		if reqs := fc.requests(); len(reqs) != 1 || reqs[0].Authorization != "Bearer registry-credential" {
			t.Errorf("cache requests %+v, want the client's Authorization unaltered", reqs)
		}
	}
	for _, tok := range []string{"short", strings.Repeat("a", 15), "has space in the middle", "tab\tin-the-middle-xx", "non-ascii-ééééééééé"} {
		if (Config{ClientTokens: []string{tok}}).Validate() == nil {
			t.Errorf("token %q accepted", tok)
		}
	}
}

// TestSlowClientsTieUpNothing: connections that send half a request line
// hold their slots only until ReadTimeout, then get 408 OCI JSON and are
// closed; a normal request is served meanwhile, connections beyond MaxConns
// are refused with 503 OCI JSON, and once the slow ones are gone a new
// connection is served.
func TestSlowClientsTieUpNothing(t *testing.T) {
	const (
		slow        = 10
		readTimeout = time.Second
	)
	ts := startTCP(t, Config{ReadTimeout: readTimeout, MaxConns: slow + 1}, newTestCache(t, newImage().origin, nil), nil)
	type slowConn struct {
		conn  net.Conn
		start time.Time
	}
	var conns []slowConn
	for range slow {
		start := time.Now()
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /v2/library/alpine/manif"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, slowConn{c, start})
	}

	// Meanwhile: a normal request takes the last slot, and keeps it (its
	// connection stays open for keep-alive).
	resp, _, err := ts.do(t, "GET", "/v2/alpine/manifests/latest", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("normal request while slow clients wait: %v, %v", resp, err)
	}
	// Every slot is taken: a new connection is refused, in OCI JSON.
	extra, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(waitLimit))
	refused, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("connection beyond MaxConns: %v", err)
	}
	body, _ := io.ReadAll(refused.Body)
	extra.Close()
	if refused.StatusCode != http.StatusServiceUnavailable || errorCode(t, body) != oci.CodeUnavailable {
		t.Errorf("connection beyond MaxConns: %d %s, want 503 UNAVAILABLE", refused.StatusCode, body)
	}

	for i, sc := range conns {
		sc.conn.SetReadDeadline(time.Now().Add(waitLimit))
		br := bufio.NewReader(sc.conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || errorCode(t, body) == "" {
			t.Errorf("slow connection %d: %d %s, want 408 OCI JSON", i, resp.StatusCode, body)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("slow connection %d: not closed after its answer (%v)", i, err)
		}
		if waited := time.Since(sc.start); waited < readTimeout {
			t.Errorf("slow connection %d closed after %v, before ReadTimeout %v", i, waited, readTimeout)
		}
	}
	// The slow connections' slots are free again: fresh connections are
	// served while the keep-alive one still holds its slot.
	ts.client.Transport.(*http.Transport).DisableKeepAlives = true
	for range slow {
		resp, _, err := ts.do(t, "GET", "/v2/", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the slow clients: %v, %v", resp, err)
		}
	}
}

// TestServeTLS: with Config.TLS the server speaks HTTPS on loopback, and a
// plain HTTP request to it is not served.
func TestServeTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ts := startTCP(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}, newTestCache(t, newImage().origin, nil), nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	for _, path := range []string{"/v2/", "/v2/alpine/manifests/latest", "/healthz"} {
		resp, err := client.Get("https://" + ts.addr + path)
		if err != nil {
			t.Fatalf("https %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS == nil {
			t.Errorf("https %s: %d over %+v", path, resp.StatusCode, resp.TLS)
		}
	}
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := plain.Get("http://" + ts.addr + "/v2/alpine/manifests/latest"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served by the TLS server")
		}
	}
}
