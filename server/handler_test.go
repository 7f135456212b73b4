package server

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/oci"
)

func TestRouting(t *testing.T) {
	im := newImage()
	blob := im.blobDigest
	noAllow := "-" // the Allow header must be absent
	tests := []struct {
		name       string
		method     string
		target     string
		header     http.Header
		wantStatus int
		wantCode   string       // OCI error code, "" for success
		wantAllow  string       // noAllow, or the Allow header's value
		wantReq    *oci.Request // what the cache is asked; nil: nothing
	}{
		{name: "base", method: "GET", target: "/v2/", wantStatus: 200, wantAllow: noAllow},
		{name: "base without slash", method: "GET", target: "/v2", wantStatus: 200, wantAllow: noAllow},
		{name: "base HEAD", method: "HEAD", target: "/v2/", wantStatus: 200, wantAllow: noAllow},
		{
			name: "default registry adds library/", method: "GET", target: "/v2/alpine/manifests/latest",
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Tag: "latest"}},
		},
		{
			name: "ns docker.io", method: "GET", target: "/v2/alpine/manifests/latest?ns=docker.io",
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Tag: "latest"}},
		},
		{
			name: "ns alias folded", method: "HEAD", target: "/v2/library/alpine/manifests/3.20?ns=index.docker.io",
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "HEAD", Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Tag: "3.20"}},
		},
		{
			name: "ns other registry", method: "GET", target: "/v2/org/app/manifests/v1?ns=ghcr.io",
			header:     http.Header{"Authorization": {"Bearer tok"}, "Accept": {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.v2+json;q=0.9, */*"}},
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{
				Method: "GET", Kind: oci.KindManifest, Registry: "ghcr.io", Repository: "org/app", Reference: oci.Reference{Tag: "v1"},
				Accept:        []string{"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.v2+json", "*/*"},
				Authorization: "Bearer tok",
			},
		},
		{
			name: "ns makes a host-like first component part of the name", method: "GET",
			target:     "/v2/team.name/app/manifests/v1?ns=registry.example.com",
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: "registry.example.com", Repository: "team.name/app", Reference: oci.Reference{Tag: "v1"}},
		},
		{
			name: "host prefix", method: "GET", target: "/v2/ghcr.io/org/app/blobs/" + string(blob),
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindBlob, Registry: "ghcr.io", Repository: "org/app", Reference: oci.Reference{Digest: blob}},
		},
		{
			name: "host prefix docker.io adds library/", method: "GET", target: "/v2/docker.io/alpine/manifests/" + string(im.manifestDigest),
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Digest: im.manifestDigest}},
		},
		{
			name: "host prefix with port", method: "GET", target: "/v2/localhost:5000/app/manifests/v1",
			wantStatus: 200, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: "localhost:5000", Repository: "app", Reference: oci.Reference{Tag: "v1"}},
		},
		{name: "ns invalid", method: "GET", target: "/v2/alpine/manifests/latest?ns=http://evil", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "ns empty", method: "GET", target: "/v2/alpine/manifests/latest?ns=", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "ns twice", method: "GET", target: "/v2/alpine/manifests/latest?ns=docker.io&ns=ghcr.io", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "ns twice, the same", method: "GET", target: "/v2/org/app/blobs/" + string(digestA) + "?ns=ghcr.io&ns=ghcr.io", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "ns twice, one empty", method: "HEAD", target: "/v2/alpine/manifests/latest?ns=docker.io&ns", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "ns host-like component with port is no name", method: "GET", target: "/v2/reg.io:5000/app/manifests/v1?ns=ghcr.io", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "name upper case", method: "GET", target: "/v2/Alpine/manifests/latest", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "name percent-escaped", method: "GET", target: "/v2/alp%69ne/manifests/latest", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "name dot-dot", method: "GET", target: "/v2/../etc/manifests/latest", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "name escaped slash", method: "GET", target: "/v2/a%2F..%2Fb/manifests/latest", wantStatus: 400, wantCode: oci.CodeNameInvalid, wantAllow: noAllow},
		{name: "digest invalid", method: "GET", target: "/v2/alpine/blobs/sha256:xyz", wantStatus: 400, wantCode: oci.CodeDigestInvalid, wantAllow: noAllow},
		{name: "blob by tag", method: "GET", target: "/v2/alpine/blobs/latest", wantStatus: 400, wantCode: oci.CodeDigestInvalid, wantAllow: noAllow},
		{name: "reference invalid", method: "GET", target: "/v2/alpine/manifests/-bad", wantStatus: 400, wantCode: oci.CodeManifestInvalid, wantAllow: noAllow},
		{name: "unknown endpoint", method: "GET", target: "/v2/alpine/whatever/x", wantStatus: 404, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "not the API", method: "GET", target: "/index.html", wantStatus: 404, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "v2 prefix of another word", method: "GET", target: "/v2x/", wantStatus: 404, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "push: start upload", method: "POST", target: "/v2/alpine/blobs/uploads/", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: ""},
		{name: "push: chunk", method: "PATCH", target: "/v2/alpine/blobs/uploads/1234", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: ""},
		{name: "push: manifest", method: "PUT", target: "/v2/alpine/manifests/latest", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "delete blob", method: "DELETE", target: "/v2/alpine/blobs/" + string(digestA), wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "delete at an invalid name is still a push", method: "DELETE", target: "/v2/BAD/manifests/x", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "post to base", method: "POST", target: "/v2/", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "options", method: "OPTIONS", target: "/v2/alpine/manifests/latest", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "catalog", method: "GET", target: "/v2/_catalog", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: ""},
		{
			name: "tags list", method: "GET", target: "/v2/alpine/tags/list?n=10&last=3.19&other=x",
			wantStatus: 404, wantCode: oci.CodeNameUnknown, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindTags, Registry: "docker.io", Repository: "library/alpine", List: oci.ListQuery{N: "10", Last: "3.19"}},
		},
		{
			name: "tags list HEAD with ns", method: "HEAD", target: "/v2/team.name/app/tags/list?ns=registry.example.com",
			wantStatus: 404, wantCode: oci.CodeNameUnknown, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "HEAD", Kind: oci.KindTags, Registry: "registry.example.com", Repository: "team.name/app"},
		},
		{
			name: "referrers", method: "GET", target: "/v2/ghcr.io/org/app/referrers/" + string(digestA) + "?artifactType=application/vnd.example%2Bjson",
			wantStatus: 404, wantCode: oci.CodeNameUnknown, wantAllow: noAllow,
			wantReq: &oci.Request{Method: "GET", Kind: oci.KindReferrers, Registry: "ghcr.io", Repository: "org/app",
				Reference: oci.Reference{Digest: digestA}, List: oci.ListQuery{ArtifactType: "application/vnd.example+json"}},
		},
		{name: "tags list n twice", method: "GET", target: "/v2/alpine/tags/list?n=1&n=2", wantStatus: 400, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "tags list bad n", method: "GET", target: "/v2/alpine/tags/list?n=-1", wantStatus: 400, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "tags list artifactType", method: "GET", target: "/v2/alpine/tags/list?artifactType=a/b", wantStatus: 400, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "referrers by tag", method: "GET", target: "/v2/alpine/referrers/latest", wantStatus: 400, wantCode: oci.CodeDigestInvalid, wantAllow: noAllow},
		{name: "referrers with n", method: "GET", target: "/v2/alpine/referrers/" + string(digestA) + "?n=1", wantStatus: 400, wantCode: oci.CodeUnsupported, wantAllow: noAllow},
		{name: "delete tags", method: "DELETE", target: "/v2/alpine/tags/list", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "put referrers", method: "PUT", target: "/v2/alpine/referrers/" + string(digestA), wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "delete manifest", method: "DELETE", target: "/v2/alpine/manifests/" + string(digestA), wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: "GET, HEAD"},
		{name: "catalog paged", method: "GET", target: "/v2/_catalog?n=10", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: ""},
		{name: "catalog HEAD", method: "HEAD", target: "/v2/_catalog", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: ""},
		{name: "upload status", method: "GET", target: "/v2/alpine/blobs/uploads/1234", wantStatus: 405, wantCode: oci.CodeUnsupported, wantAllow: ""},
	}
	fc := newSpy(t, im)
	ts := startServer(t, Config{}, fc)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc.reset()
			resp, body, err := ts.do(t, tt.method, tt.target, tt.header)
			if err != nil {
				t.Fatalf("reading body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantCode != "" {
				if got := errorCode(t, body); got != tt.wantCode && tt.method != "HEAD" {
					t.Errorf("error code = %q, want %q (body %s)", got, tt.wantCode, body)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
			}
			allow, hasAllow := resp.Header["Allow"]
			switch {
			case tt.wantAllow == noAllow && hasAllow:
				t.Errorf("Allow = %q, want none", allow)
			case tt.wantAllow != noAllow && (!hasAllow || len(allow) != 1 || allow[0] != tt.wantAllow):
				t.Errorf("Allow = %q (present %v), want %q", allow, hasAllow, tt.wantAllow)
			}
			isAPI := len(tt.target) >= 3 && tt.target[:3] == "/v2" && (len(tt.target) == 3 || tt.target[3] == '/')
			if got := resp.Header.Get(apiVersionHeader); isAPI && got != apiVersion {
				t.Errorf("%s = %q, want %q", apiVersionHeader, got, apiVersion)
			}
			var want []oci.Request
			if tt.wantReq != nil {
				want = []oci.Request{*tt.wantReq}
			}
			if diff := cmp.Diff(want, fc.requests()); diff != "" {
				t.Errorf("cache requests (-want +got):\n%s", diff)
			}
			if tt.wantStatus == 200 && (tt.target == "/v2/" || tt.target == "/v2") && tt.method == "GET" && string(body) != "{}" {
				t.Errorf("base body = %q, want {}", body)
			}
			line := ts.logs.wait(t, i+1)[i]
			if path, _, _ := strings.Cut(tt.target, "?"); tt.wantStatus == 400 && line["path"] != quoteShort(path) {
				// Proves the path reached the parser as sent, not cleaned.
				t.Errorf("logged path = %v, want %s", line["path"], quoteShort(path))
			}
		})
	}
}

func TestDefaultRegistryConfig(t *testing.T) {
	fc := newSpy(t, newImage())
	ts := startServer(t, Config{DefaultRegistry: "Quay.IO"}, fc)
	for _, target := range []string{"/v2/coreos/etcd/manifests/v3", "/v2/etcd/manifests/v3"} {
		if resp, _, _ := ts.do(t, "GET", target, nil); resp.StatusCode != 200 {
			t.Fatalf("GET %s: status %d", target, resp.StatusCode)
		}
	}
	var got []string
	for _, r := range fc.requests() {
		got = append(got, r.Registry+"/"+r.Repository)
	}
	// No library/ outside Docker Hub.
	if diff := cmp.Diff([]string{"quay.io/coreos/etcd", "quay.io/etcd"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{{DefaultRegistry: "not a host"}, {ReadTimeout: -1}, {MaxConnsPerIP: -2}} {
		if cfg.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

// TestUnreadableRequests: requests fasthttp cannot read get an OCI error
// and an access line too.
func TestUnreadableRequests(t *testing.T) {
	ts := startServer(t, Config{MaxHeaderBytes: 4096}, newTestCache(t, newImage().origin, nil))
	tests := []struct {
		name       string
		raw        string
		wantStatus int
		wantCode   string
	}{
		{"header too large", "GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("t", 8000) + "\r\n\r\n", 431, oci.CodeSizeInvalid},
		{"push body too large", "PUT /v2/app/blobs/uploads/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n", 413, oci.CodeSizeInvalid},
		{"malformed", "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400, "UNKNOWN"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := ts.ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tt.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || errorCode(t, body) != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
			if line := ts.logs.wait(t, i+1)[i]; line["status"] != int64(tt.wantStatus) || line["err"] == nil {
				t.Errorf("access line %v", line)
			}
		})
	}
}

// TestAbsoluteFormTarget: a request-target in absolute form (as sent to a
// proxy) routes by its path, as sent.
func TestAbsoluteFormTarget(t *testing.T) {
	fc := newSpy(t, newImage())
	ts := startServer(t, Config{}, fc)
	conn, err := ts.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET http://mirror.test/v2/alpine/manifests/latest?ns=docker.io HTTP/1.1\r\nHost: mirror.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if reqs := fc.requests(); resp.StatusCode != 200 || len(reqs) != 1 || reqs[0].Repository != "library/alpine" {
		t.Errorf("status %d, requests %+v", resp.StatusCode, reqs)
	}
}
