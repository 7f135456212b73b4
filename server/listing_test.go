package server

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// TestListingAnswers: tag lists and referrers come back as the origin sent
// them, body and headers, with the Link made to point at the same listing
// through cacheyd whichever way the request named its registry; kept for
// the TTL, and HEAD answered with a GET's headers.
func TestListingAnswers(t *testing.T) {
	o := origintest.New()
	page := oci.ListQuery{N: "2"}
	upLink := `</v2/org/app/tags/list?last=b&n=2>; rel="next"`
	tags := origintest.Listing{Body: []byte(`{"name":"org/app","tags":["a","b"]}`), MediaType: "application/json", Link: upLink}
	o.AddListing(oci.KindTags, "", page, tags)
	idx := origintest.Listing{Body: []byte(`{"schemaVersion":2,"manifests":[]}`), MediaType: "application/vnd.oci.image.index.v1+json", FiltersApplied: "artifactType"}
	filter := oci.ListQuery{ArtifactType: "application/vnd.example.sig"}
	o.AddListing(oci.KindReferrers, string(digestA), filter, idx)
	c := newTestCache(t, o, func(cfg *cache.Config) { cfg.TagTTL = time.Hour })
	ts := startServer(t, Config{}, c)

	tests := []struct {
		name, method, target string
		want                 origintest.Listing
		wantLink, wantNS     string
	}{
		{"ns", "GET", "/v2/org/app/tags/list?n=2&ns=registry.example.com", tags,
			`</v2/org/app/tags/list?last=b&n=2&ns=registry.example.com>; rel="next"`, "registry.example.com"},
		{"path prefix", "GET", "/v2/registry.example.com/org/app/tags/list?n=2", tags,
			`</v2/registry.example.com/org/app/tags/list?last=b&n=2>; rel="next"`, ""},
		{"default registry", "GET", "/v2/org/app/tags/list?n=2", tags,
			`</v2/org/app/tags/list?last=b&n=2>; rel="next"`, ""},
		{"HEAD", "HEAD", "/v2/org/app/tags/list?n=2&ns=registry.example.com", tags,
			`</v2/org/app/tags/list?last=b&n=2&ns=registry.example.com>; rel="next"`, "registry.example.com"},
		{"referrers", "GET", "/v2/org/app/referrers/" + string(digestA) + "?artifactType=application/vnd.example.sig&ns=registry.example.com", idx,
			"", "registry.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := ts.do(t, tt.method, tt.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantBody := string(tt.want.Body)
			if tt.method == "HEAD" {
				wantBody = ""
			}
			if resp.StatusCode != http.StatusOK || string(body) != wantBody {
				t.Fatalf("%s %s = %s %q, want 200 %q", tt.method, tt.target, resp.Status, body, wantBody)
			}
			h := resp.Header
			if h.Get("Content-Type") != tt.want.MediaType || h.Get("Link") != tt.wantLink || h.Get("OCI-Filters-Applied") != tt.want.FiltersApplied {
				t.Errorf("headers %v; want Content-Type %q, Link %q, OCI-Filters-Applied %q", h, tt.want.MediaType, tt.wantLink, tt.want.FiltersApplied)
			}
			if h.Get("Content-Length") != strconv.Itoa(len(tt.want.Body)) || h.Get("OCI-Namespace") != tt.wantNS {
				t.Errorf("Content-Length %q, OCI-Namespace %q; want %d, %q", h.Get("Content-Length"), h.Get("OCI-Namespace"), len(tt.want.Body), tt.wantNS)
			}
		})
	}
	// One upstream GET per registry and listing (ns and the path prefix
	// name the same registry): the rest came from the listing table.
	if n := o.Count("GET", oci.KindTags, origintest.ListRef("", page)); n != 2 {
		t.Errorf("origin asked %d times for the tag page, want 2 (one per registry)", n)
	}
	lines := ts.logs.wait(t, len(tests))
	for i, want := range []string{"upstream", "listings", "upstream", "listings", "upstream"} {
		if lines[i]["source"] != want || lines[i]["kind"] != strings.Fields("tags tags tags tags referrers")[i] {
			t.Errorf("access line %d: source %v kind %v, want %s", i, lines[i]["source"], lines[i]["kind"], want)
		}
	}
}

// TestPrivateListingChallenge: a listing the origin refuses cacheyd gets
// the origin's own 401 and challenge; the client's retry with credentials
// gets the list.
func TestPrivateListingChallenge(t *testing.T) {
	o := origintest.New()
	o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: []byte(`{"tags":["s"]}`), MediaType: "application/json"})
	refusal := &oci.Error{Status: http.StatusUnauthorized, Code: oci.CodeUnauthorized, Message: "auth", Challenge: challenge,
		Body: []byte(`{"errors":[{"code":"UNAUTHORIZED","message":"upstream's own"}]}`), ContentType: "application/json"}
	ts := startServer(t, Config{}, newTestCache(t, origintest.PrivateWith(o, "Bearer alice", refusal), nil))
	resp, body, err := ts.do(t, "GET", "/v2/org/private/tags/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != challenge || !strings.Contains(string(body), "upstream's own") {
		t.Fatalf("anonymous: %s %v %s, want the origin's 401, challenge and body", resp.Status, resp.Header, body)
	}
	resp, body, err = ts.do(t, "GET", "/v2/org/private/tags/list", http.Header{"Authorization": {"Bearer alice"}})
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != `{"tags":["s"]}` {
		t.Fatalf("with credentials: %v %v %s, want the list", err, resp.Status, body)
	}
	if line := ts.logs.wait(t, 2)[1]; line["source"] != "passthrough" {
		t.Errorf("access line source = %v, want passthrough", line["source"])
	}
}

// TestOCINamespace: every answer to a request that carried a usable ns
// says so in OCI-Namespace with that value, errors included; requests
// without one, or with one that could not scope them, get none.
func TestOCINamespace(t *testing.T) {
	im := newImage()
	ts := startServer(t, Config{}, newTestCache(t, im.origin, nil))
	guarded := startServer(t, Config{ClientTokens: []string{testToken}}, newTestCache(t, im.origin, nil))
	tests := []struct {
		ts             *testServer
		method, target string
		status         int
		want           string
	}{
		{ts, "GET", "/v2/library/app/manifests/" + string(im.manifestDigest) + "?ns=Docker.IO", 200, "Docker.IO"},
		{ts, "HEAD", "/v2/library/app/manifests/" + string(im.manifestDigest) + "?ns=docker.io", 200, "docker.io"},
		{ts, "GET", "/v2/library/app/blobs/" + string(digestA) + "?ns=docker.io", 404, "docker.io"},
		{ts, "GET", "/v2/app/tags/list?ns=localhost:5000", 404, "localhost:5000"},
		{ts, "GET", "/v2/?ns=ghcr.io", 200, "ghcr.io"},
		{ts, "DELETE", "/v2/app/manifests/v1?ns=ghcr.io", 405, "ghcr.io"},
		{ts, "GET", "/v2/_catalog?ns=ghcr.io", 405, "ghcr.io"},
		{guarded, "GET", "/v2/app/manifests/v1?ns=ghcr.io", 401, "ghcr.io"},
		{ts, "GET", "/v2/library/app/manifests/" + string(im.manifestDigest), 200, ""},
		{ts, "GET", "/v2/docker.io/library/app/manifests/" + string(im.manifestDigest), 200, ""},
		{ts, "GET", "/v2/app/manifests/v1?ns=http://evil", 400, ""},
		{ts, "GET", "/v2/app/manifests/v1?ns=a.io&ns=b.io", 400, ""},
		{ts, "GET", "/healthz?ns=ghcr.io", 200, ""},
	}
	for _, tt := range tests {
		resp, _, err := tt.ts.do(t, tt.method, tt.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, present := resp.Header["Oci-Namespace"]
		if resp.StatusCode != tt.status || (tt.want == "") == present || (present && (len(got) != 1 || got[0] != tt.want)) {
			t.Errorf("%s %s: %s, OCI-Namespace %q; want %d and %q", tt.method, tt.target, resp.Status, got, tt.status, tt.want)
		}
	}
}

func TestNextLink(t *testing.T) {
	ns := &incoming{path: "/v2/org/app/tags/list", ns: "localhost:5000", hasNS: true}
	plain := &incoming{path: "/v2/localhost:5000/org/app/tags/list"}
	tests := []struct {
		in       *incoming
		upstream string
		want     string // "" means dropped
	}{
		{ns, `</v2/org/app/tags/list?last=b&n=2>; rel="next"`, `</v2/org/app/tags/list?last=b&n=2&ns=localhost%3A5000>; rel="next"`},
		{plain, `</v2/org/app/tags/list?last=b&n=2>; rel="next"`, `</v2/localhost:5000/org/app/tags/list?last=b&n=2>; rel="next"`},
		// Absolute, on upstream's host: the client comes back to cacheyd.
		{plain, `<https://registry.example.com/v2/org/app/tags/list?n=100&last=v9>; rel="next"`, `</v2/localhost:5000/org/app/tags/list?last=v9&n=100>; rel="next"`},
		// An ns of upstream's own is replaced by the client's, or dropped.
		{ns, `</v2/org/app/tags/list?last=b&ns=other.io>; rel="next"`, `</v2/org/app/tags/list?last=b&ns=localhost%3A5000>; rel="next"`},
		{plain, `</v2/org/app/tags/list?last=b&ns=other.io>; rel="next"`, `</v2/localhost:5000/org/app/tags/list?last=b>; rel="next"`},
		// ECR's page token, escaped as it must be.
		{plain, `</v2/org/app/tags/list?last=ukD7%2FmC8%2B%3D%3D&n=100>; rel="next"`, `</v2/localhost:5000/org/app/tags/list?last=ukD7%2FmC8%2B%3D%3D&n=100>; rel="next"`},
		// Several links, and a comma inside a quoted parameter.
		{plain, `</v2/x?last=a>; rel="next"; title="a, b", </v2/x?last=0>; rel="first"`,
			`</v2/localhost:5000/org/app/tags/list?last=a>; rel="next"; title="a, b", </v2/localhost:5000/org/app/tags/list?last=0>; rel="first"`},
		{plain, `no brackets`, ""},
		{plain, `</v2/x?last=a; rel="next"`, ""},
		{plain, `<%zz>; rel="next"`, ""},
		{plain, ``, ""},
	}
	for _, tt := range tests {
		got, ok := nextLink(tt.upstream, tt.in)
		if (tt.want == "") == ok || got != tt.want {
			t.Errorf("nextLink(%q) = %q, %v; want %q", tt.upstream, got, ok, tt.want)
		}
	}
}

// FuzzNextLink: whatever upstream sends, the rewrite never panics, and
// every link it keeps points at the client's own path on cacheyd.
func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`</v2/a/tags/list?last=b&n=2>; rel="next"`, `<https://x/v2/a?n=1>; rel=next, <y>`, `<>`, `<a>; t="\",<"`} {
		f.Add(s)
	}
	in := &incoming{path: "/v2/org/app/tags/list", ns: "localhost:5000", hasNS: true}
	f.Fuzz(func(t *testing.T, upstream string) {
		got, ok := nextLink(upstream, in)
		if !ok {
			return
		}
		if !strings.HasPrefix(got, "<"+in.path+"?") && !strings.HasPrefix(got, "<"+in.path+">") {
			t.Fatalf("nextLink(%q) = %q: a link off the client's path", upstream, got)
		}
		if strings.ContainsAny(got, "\r\n") && !strings.ContainsAny(upstream, "\r\n") {
			t.Fatalf("nextLink(%q) = %q: a line break made up", upstream, got)
		}
	})
}

// TestPassThroughListingGivesBackItsMemory: a listing read with a client's
// credentials holds its memory of the cache's read budget while it is sent,
// and gives it back once it is: with room in the registry's quarter for
// one such listing being read (its pieces and its copy), the same listing
// asked again and again on one connection is served every time, and
// nothing is held after.
func TestPassThroughListingGivesBackItsMemory(t *testing.T) {
	o := origintest.New()
	body := []byte(`{"tags":["` + strings.Repeat("t", 100<<10) + `"]}`)
	o.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: body, MediaType: "application/json"})
	m := metrics.New(nil)
	// A quarter of 256 KiB: the listing's 2 pieces of 64 KiB and its copy
	// of 100 KiB, not a second listing beside them.
	c := newTestCache(t, origintest.Private(o, "Bearer alice"), func(cfg *cache.Config) { cfg.ReadMemory, cfg.Metrics = 1<<20, m })
	ts := startTCP(t, Config{}, c, nil)
	conn := dialRaw(t, ts.addr)
	br := bufio.NewReader(conn)
	for i := range 3 {
		sendRaw(t, conn, "GET /v2/org/private/tags/list HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\r\n")
		if resp, got := readRaw(t, br, "GET"); resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
			t.Fatalf("listing %d: %s, %d bytes", i, resp.Status, len(got))
		}
	}
	// The connection's next answer comes after the last listing was sent.
	sendRaw(t, conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	readRaw(t, br, "GET")
	if held := testutil.ToFloat64(m.ReadMemoryBytes); held != 0 {
		t.Errorf("%v bytes of read memory held once every listing was sent, want 0", held)
	}
}
