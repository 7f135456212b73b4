package registrytest

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	stdcmp "cmp"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ref parses "repo:tag" or "repo@digest" on reg.
func ref(t *testing.T, reg *Registry, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(reg.Host()+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pullOptions are remote options with a transport of the test's own.
func pullOptions(t *testing.T, reg *Registry, auth authn.Authenticator) []remote.Option {
	opts := []remote.Option{remote.WithContext(t.Context()), remote.WithTransport(reg.Client().Transport)}
	if auth != nil {
		opts = append(opts, remote.WithAuth(auth))
	}
	return opts
}

// readAll reads every layer and the config of img, checking digests.
func readAll(t *testing.T, img v1.Image) {
	t.Helper()
	if _, err := img.RawConfigFile(); err != nil {
		t.Fatalf("config: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		want, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %s: %v", want, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %s: %v", want, err)
		}
		got, _, _ := v1.SHA256(strings.NewReader(string(b)))
		if got != want {
			t.Fatalf("layer %s: read content with digest %s", want, got)
		}
	}
}

// step is the part of a recorded request that the pull tests compare.
type step struct {
	Host, Method, Kind, Ref string
	Auth                    string // scheme of Authorization, "" when absent
}

func steps(reqs []Request) []step {
	out := make([]step, len(reqs))
	for i, q := range reqs {
		scheme, _, _ := strings.Cut(q.Authorization, " ")
		out[i] = step{q.Host, q.Method, q.Kind, q.Ref, scheme}
	}
	return out
}

func TestPullThroughTokenAndRedirect(t *testing.T) {
	reg := New(t, Options{Token: true, Redirect: true})
	seeded := reg.SeedImage(t, "library/alpine", "3.20", 2, 4096)
	if n := len(reg.Requests()); n != 0 {
		t.Fatalf("seeding recorded %d requests, want 0", n)
	}

	img, err := remote.Image(ref(t, reg, "library/alpine:3.20"), pullOptions(t, reg, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, img)

	manifest, _ := seeded.Digest()
	cfg, _ := seeded.ConfigName()
	layers, _ := seeded.Layers()
	l0, _ := layers[0].Digest()
	l1, _ := layers[1].Digest()
	want := []step{
		{HostRegistry, "GET", KindBase, "", ""},
		{HostRegistry, "GET", KindToken, "", ""},
		{HostRegistry, "GET", KindManifest, "3.20", "Bearer"},
		{HostRegistry, "GET", KindBlob, cfg.String(), "Bearer"},
		{HostCDN, "GET", KindCDN, cfg.String(), ""},
		{HostRegistry, "GET", KindBlob, l0.String(), "Bearer"},
		{HostCDN, "GET", KindCDN, l0.String(), ""},
		{HostRegistry, "GET", KindBlob, l1.String(), "Bearer"},
		{HostCDN, "GET", KindCDN, l1.String(), ""},
	}
	if diff := cmp.Diff(want, steps(reg.Requests())); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if got, _ := img.Digest(); got != manifest {
		t.Errorf("pulled manifest %s, seeded %s", got, manifest)
	}
	for _, c := range []struct {
		method, kind, ref string
		want              int
	}{
		{"", "", "", 9},
		{"GET", KindCDN, "", 3},
		{"GET", KindBlob, "", 3},
		{"", "", l0.String(), 2},
		{"HEAD", "", "", 0},
	} {
		if got := reg.Count(c.method, c.kind, c.ref); got != c.want {
			t.Errorf("Count(%q, %q, %q) = %d, want %d", c.method, c.kind, c.ref, got, c.want)
		}
	}
	reg.Reset()
	if got := reg.Count("", "", ""); got != 0 {
		t.Errorf("after Reset, Count = %d", got)
	}
}

func TestChallenges(t *testing.T) {
	reg := New(t, Options{Token: true})
	reg.SeedImage(t, "app", "v1", 1, 10)
	realm := `Bearer realm="http://localhost:` + strings.Split(reg.Host(), ":")[1] + `/token",service="registrytest"`
	for _, c := range []struct {
		path, challenge string
	}{
		{"/v2/", realm},
		{"/v2/app/manifests/v1", realm + `,scope="repository:app:pull"`},
		{"/v2/team/app/blobs/sha256:" + strings.Repeat("a", 64), realm + `,scope="repository:team/app:pull"`},
	} {
		resp, err := reg.Client().Get(reg.URL() + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("GET %s: %d %q, want 401 %q", c.path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), c.challenge)
		}
	}
}

func TestCDNRefusesAuthorizationAndBadSignatures(t *testing.T) {
	reg := New(t, Options{Redirect: true})
	content := []byte(strings.Repeat("0123456789", 10))
	d := reg.SeedBlob(t, "app", content)
	signed := reg.SignedURL(d.String())
	for _, c := range []struct {
		name       string
		url        string
		header     http.Header
		wantStatus int
		wantBody   string
	}{
		{"signed", signed, nil, http.StatusOK, string(content)},
		{"range", signed, http.Header{"Range": {"bytes=10-19"}}, http.StatusPartialContent, "0123456789"},
		{"open-ended range", signed, http.Header{"Range": {"bytes=95-"}}, http.StatusPartialContent, "56789"},
		{"bearer", signed, http.Header{"Authorization": {"Bearer abc"}}, http.StatusBadRequest, ""},
		{"basic", signed, http.Header{"Authorization": {"Basic YTpi"}}, http.StatusBadRequest, ""},
		{"unsigned", reg.CDNURL() + "/blob/" + d.String(), nil, http.StatusForbidden, ""},
		{"wrong signature", reg.CDNURL() + "/blob/" + d.String() + "?sig=00", nil, http.StatusForbidden, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.url, nil)
			for k, v := range c.header {
				req.Header[k] = v
			}
			resp, err := reg.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.wantStatus, body)
			}
			if c.wantBody != "" && string(body) != c.wantBody {
				t.Errorf("body %q, want %q", body, c.wantBody)
			}
		})
	}
}

func TestRegistryRedirectsOnlyBlobGETs(t *testing.T) {
	reg := New(t, Options{Redirect: true})
	d := reg.SeedBlob(t, "app", []byte("hello"))
	client := &http.Client{
		Transport:     reg.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, c := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/v2/app/blobs/" + d.String(), http.StatusTemporaryRedirect, reg.SignedURL(d.String())},
		{"HEAD", "/v2/app/blobs/" + d.String(), http.StatusOK, ""},
		{"GET", "/v2/app/blobs/sha256:" + strings.Repeat("0", 64), http.StatusNotFound, ""},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, reg.URL()+c.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Location"), c.status, c.location)
		}
	}
}

func TestConcurrentRequestsAreCountedExactly(t *testing.T) {
	reg := New(t, Options{})
	reg.SeedImage(t, "app", "v1", 1, 10)
	const n = 32
	var wg sync.WaitGroup
	for range n {
		// Each ends with its one request.
		wg.Go(func() {
			resp, err := reg.Client().Get(reg.URL() + "/v2/app/manifests/v1")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if got := reg.Count("GET", KindManifest, "v1"); got != n {
		t.Errorf("Count = %d, want %d", got, n)
	}
}

func TestRecordedFields(t *testing.T) {
	reg := New(t, Options{})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", reg.URL()+"/v2/org/app/manifests/v1?x=1", nil)
	req.Header.Add("Accept", "application/vnd.oci.image.index.v1+json")
	req.Header.Add("Accept", "application/vnd.oci.image.manifest.v1+json")
	req.Header.Set("Range", "bytes=0-9")
	req.Header.Set("Authorization", "Bearer t")
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := []Request{{
		Host: HostRegistry, Method: "GET", Path: "/v2/org/app/manifests/v1", Query: "x=1",
		Kind: KindManifest, Name: "org/app", Ref: "v1", Authorization: "Bearer t", Range: "bytes=0-9",
		Accept: "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
	}}
	if diff := cmp.Diff(want, reg.Requests()); diff != "" {
		t.Errorf("Requests (-want +got):\n%s", diff)
	}
}

func TestParsePath(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, c := range []struct {
		path, kind, name, ref string
	}{
		{"/v2/", KindBase, "", ""},
		{"/v2", KindBase, "", ""},
		{"/token", KindToken, "", ""},
		{"/v2/app/manifests/latest", KindManifest, "app", "latest"},
		{"/v2/library/alpine/manifests/" + d, KindManifest, "library/alpine", d},
		{"/v2/a/b/c/blobs/" + d, KindBlob, "a/b/c", d},
		{"/v2/app/blobs/uploads/", KindOther, "app", ""},
		{"/v2/app/blobs/uploads/123", KindOther, "app", ""},
		{"/v2/org/app/tags/list", KindTags, "org/app", ""},
		{"/v2/app/referrers/" + d, KindReferrers, "app", d},
		{"/v2/_catalog", KindOther, "", ""},
		{"/v2/manifests/x", KindOther, "", ""},
		{"/healthz", KindOther, "", ""},
	} {
		kind, name, ref := parsePath(c.path)
		if kind != c.kind || name != c.name || ref != c.ref {
			t.Errorf("parsePath(%q) = %q, %q, %q; want %q, %q, %q", c.path, kind, name, ref, c.kind, c.name, c.ref)
		}
	}
}

func TestBlobRangesOnRegistry(t *testing.T) {
	reg := New(t, Options{})
	content := []byte("0123456789abcdef")
	d := reg.SeedBlob(t, "app", content).String()
	for _, c := range []struct {
		method, rng string
		status      int
		body        string
		length      int64
	}{
		{"GET", "", 200, string(content), 16},
		{"HEAD", "", 200, "", 16},
		{"GET", "bytes=10-", 206, "abcdef", 6},
		{"GET", "bytes=2-4", 206, "234", 3},
		{"GET", "bytes=-3", 206, "def", 3},
		{"GET", "bytes=16-", 416, "", -1},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, reg.URL()+"/v2/app/blobs/"+d, nil)
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := reg.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || (c.status != 416 && (string(body) != c.body || resp.ContentLength != c.length)) {
			t.Errorf("%s Range %q: %d %q length %d; want %d %q length %d", c.method, c.rng, resp.StatusCode, body, resp.ContentLength, c.status, c.body, c.length)
		}
		if c.status < 300 && resp.Header.Get("Docker-Content-Digest") != d {
			t.Errorf("%s Range %q: Docker-Content-Digest %q", c.method, c.rng, resp.Header.Get("Docker-Content-Digest"))
		}
	}
}

// A client that sets Authorization on the request itself and lets net/http
// follow the redirect keeps the header on a same-name host (the default CDN)
// and loses it on another name (CDNHostname "127.0.0.1").
func TestCDNHostnameAndPlainClients(t *testing.T) {
	for _, c := range []struct {
		hostname string
		status   int
	}{
		{"", http.StatusBadRequest},
		{"localhost", http.StatusBadRequest},
		{"127.0.0.1", http.StatusOK},
	} {
		t.Run("hostname="+c.hostname, func(t *testing.T) {
			reg := New(t, Options{Token: true, Redirect: true, CDNHostname: c.hostname})
			if !strings.HasPrefix(reg.CDNURL(), "http://"+stdcmp.Or(c.hostname, "localhost")+":") || reg.CDNURL() != "http://"+reg.CDNHost() {
				t.Errorf("CDNURL %q, CDNHost %q", reg.CDNURL(), reg.CDNHost())
			}
			d := reg.SeedBlob(t, "app", []byte("content")).String()
			_, tok := token(t, reg, "", "", "repository:app:pull")
			resp := get(t, reg, "/v2/app/blobs/"+d, "Bearer "+tok)
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
		})
	}
}
