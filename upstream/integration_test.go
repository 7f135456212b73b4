package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// Tests against a real registry (go-containerregistry's) that demands
// tokens like Docker Hub, redirects blob GETs to a CDN host that refuses
// Authorization, and records every request.

// fakeRegistry starts a registry and a Client mapping testRegistry to it.
// The registry is on localhost, trusted as the host of a mapped URL; a CDN
// on 127.0.0.1 must be allowed by cfg, which it is unless cfg says
// otherwise.
func fakeRegistry(t *testing.T, opts registrytest.Options, cfg Config) (*registrytest.Registry, *Client) {
	t.Helper()
	reg := registrytest.New(t, opts)
	cfg.RegistryURLs = map[string]string{testRegistry: reg.URL()}
	if cfg.AllowedHosts == nil {
		cfg.AllowedHosts = []string{"127.0.0.1"}
	}
	return reg, newClient(t, cfg)
}

// image is what the tests fetch of a seeded image.
type image struct {
	repo     string
	manifest oci.Digest
	blobs    []oci.Digest // config, then layers
}

func seed(t *testing.T, reg *registrytest.Registry, repo, tag string) image {
	t.Helper()
	img := reg.SeedImage(t, repo, tag, 2, 2000)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out := image{repo: repo, manifest: oci.Digest(d.String()), blobs: []oci.Digest{oci.Digest(m.Config.Digest.String())}}
	for _, l := range m.Layers {
		out.blobs = append(out.blobs, oci.Digest(l.Digest.String()))
	}
	return out
}

func blobOf(repo string, d oci.Digest) *oci.Request {
	return &oci.Request{Method: "GET", Kind: oci.KindBlob, Registry: testRegistry, Repository: repo, Reference: oci.Reference{Digest: d}}
}

func manifestOf(repo, tag string) *oci.Request {
	return &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: testRegistry, Repository: repo, Reference: oci.Reference{Tag: tag}}
}

// fetchVerified fetches req and checks the body against want.
func fetchVerified(t *testing.T, c *Client, req *oci.Request, want oci.Digest) error {
	resp, err := c.Fetch(t.Context(), req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := want.NewHash()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if !want.Matches(h) {
		return fmt.Errorf("%s: content does not match", want.Short())
	}
	return nil
}

func TestTokenReusedPerRepository(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true, Redirect: true}, Config{})
	images := []image{seed(t, reg, "team/app", "v1"), seed(t, reg, "team/db", "v1")}

	// A cold burst: every repository's identity is set up once, whoever
	// asks first, and shared by the others.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		for _, img := range images {
			for _, b := range img.blobs {
				wg.Go(func() { errs <- fetchVerified(t, c, blobOf(img.repo, b), b) })
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Warm: more fetches reuse the tokens.
	for range 3 {
		for _, img := range images {
			if err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := reg.Count("GET", registrytest.KindToken, ""); n != len(images) {
		t.Errorf("token requests = %d, want exactly one per repository (%d)", n, len(images))
	}
	if n := reg.Count("GET", registrytest.KindBlob, ""); n != 8*6 {
		t.Errorf("blob GETs = %d, want %d", n, 8*6)
	}
	for _, q := range reg.Requests() {
		switch {
		case q.Host == registrytest.HostCDN && q.Authorization != "":
			t.Errorf("CDN request %s carried Authorization %q", q.Ref, q.Authorization)
		case q.Kind == registrytest.KindBlob || q.Kind == registrytest.KindManifest:
			if !strings.HasPrefix(q.Authorization, "Bearer ") {
				t.Errorf("%s %s without cacheyd's token: %q", q.Kind, q.Ref, q.Authorization)
			}
		}
	}
	if n := reg.Count("GET", registrytest.KindCDN, ""); n != 8*6 {
		t.Errorf("CDN GETs = %d, want every blob GET redirected (%d)", n, 8*6)
	}
}

func TestExpiredTokenIsRefreshed(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true}, Config{})
	img := seed(t, reg, "team/app", "v1")
	if err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest); err != nil {
		t.Fatal(err)
	}
	reg.ExpireTokens()
	if err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest); err != nil {
		t.Fatal(err)
	}
	if n := reg.Count("GET", registrytest.KindToken, ""); n != 2 {
		t.Errorf("token requests = %d, want 2 (one more after expiry)", n)
	}
}

func TestIdentityCacheIsBounded(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true}, Config{AuthCacheSize: 1})
	a, b := seed(t, reg, "team/a", "v1"), seed(t, reg, "team/b", "v1")
	for _, img := range []image{a, a, b, b, a} {
		if err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest); err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.Count("GET", registrytest.KindToken, ""); n != 3 {
		t.Errorf("token requests = %d, want 3 (a, b, a again after eviction)", n)
	}
}

func TestSetupOutlivesTheRequestThatStartedIt(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true}, Config{})
	img := seed(t, reg, "team/app", "v1")
	release := make(chan struct{})
	reg.SetHook(registrytest.Hold(registrytest.On("GET", registrytest.KindToken, ""), release))

	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { // stops when Fetch returns, after cancel
		_, err := c.Fetch(ctx, manifestOf(img.repo, "v1"))
		first <- err
	}()
	if err := reg.Wait(t.Context(), registrytest.On("GET", registrytest.KindToken, ""), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Fetch = %v, want context.Canceled", err)
	}
	second := make(chan error, 1)
	go func() { // stops when Fetch returns, after release
		second <- fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest)
	}()
	close(release)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if n := reg.Count("GET", registrytest.KindToken, ""); n != 1 {
		t.Errorf("token requests = %d, want 1: the second Fetch uses the setup the first started", n)
	}
}

// anonymousChallenge is what the registry tells a client without
// credentials that asks for req.
func anonymousChallenge(t *testing.T, reg *registrytest.Registry, req *oci.Request, authorization string) string {
	t.Helper()
	part := "/manifests/"
	if req.Kind == oci.KindBlob {
		part = "/blobs/"
	}
	hreq, err := http.NewRequestWithContext(t.Context(), req.Method, reg.URL()+"/v2/"+req.Repository+part+req.Reference.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		hreq.Header.Set("Authorization", authorization)
	}
	resp, err := reg.Client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous %s: %s, want 401", hreq.URL, resp.Status)
	}
	return resp.Header.Get("WWW-Authenticate")
}

// clientToken gets a token for user the way containerd does after a 401.
func clientToken(t *testing.T, reg *registrytest.Registry, repo, user, pass string) string {
	t.Helper()
	q := url.Values{"scope": {"repository:" + repo + ":pull"}, "service": {"registrytest"}}
	hreq, err := http.NewRequestWithContext(t.Context(), "GET", reg.URL()+"/token?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.SetBasicAuth(user, pass)
	resp, err := reg.Client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("token for %s: %s, %v", user, resp.Status, err)
	}
	return tok.Token
}

func TestPrivateRepository(t *testing.T) {
	// The CDN on another port of the registry's host name, or on another
	// host name: the client's Authorization reaches neither.
	for _, cdn := range []string{"localhost", "127.0.0.1"} {
		t.Run("CDN on "+cdn, func(t *testing.T) { testPrivateRepository(t, cdn) })
	}
}

func testPrivateRepository(t *testing.T, cdnHostname string) {
	opts := registrytest.Options{
		Token: true, Redirect: true, CDNHostname: cdnHostname,
		Users:   map[string]string{"alice": "wonderland", "bob": "builder"},
		Private: map[string][]string{"team/secret": {"alice"}},
	}
	reg, c := fakeRegistry(t, opts, Config{})
	img := seed(t, reg, "team/secret", "v1")

	t.Run("cacheyd refused: the registry's anonymous challenge comes back", func(t *testing.T) {
		for _, req := range []*oci.Request{manifestOf(img.repo, "v1"), blobOf(img.repo, img.blobs[1])} {
			_, err := c.Fetch(t.Context(), req)
			e, ok := oci.AsError(err)
			if !ok || e.Status != http.StatusUnauthorized {
				t.Fatalf("Fetch = %v, want 401", err)
			}
			if want := anonymousChallenge(t, reg, req, ""); e.Challenge != want {
				t.Errorf("Challenge = %q, want the registry's own %q", e.Challenge, want)
			}
			if len(e.Body) == 0 || e.ContentType != "application/json" {
				t.Errorf("registry's error body not kept: %q (%s)", e.Body, e.ContentType)
			}
		}
	})

	t.Run("client's Authorization forwarded, never to the CDN", func(t *testing.T) {
		reg.Reset()
		auth := "Bearer " + clientToken(t, reg, img.repo, "alice", "wonderland")
		for _, req := range []*oci.Request{manifestOf(img.repo, "v1"), blobOf(img.repo, img.blobs[0]), blobOf(img.repo, img.blobs[2])} {
			req.Authorization = auth
			want := img.manifest
			if req.Kind == oci.KindBlob {
				want = req.Reference.Digest
			}
			if err := fetchVerified(t, c, req, want); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range reg.Requests() {
			switch q.Host {
			case registrytest.HostCDN:
				if q.Authorization != "" {
					t.Errorf("CDN request carried Authorization %q", q.Authorization)
				}
			default:
				if q.Kind != registrytest.KindToken && q.Authorization != auth {
					t.Errorf("%s %s: Authorization %q, want the client's", q.Method, q.Path, q.Authorization)
				}
			}
		}
		if n := reg.Count("GET", registrytest.KindCDN, ""); n != 2 {
			t.Errorf("CDN GETs = %d, want 2", n)
		}
	})

	t.Run("client's Authorization refused: challenge passed back unaltered", func(t *testing.T) {
		auth := "Bearer " + clientToken(t, reg, img.repo, "bob", "builder")
		req := manifestOf(img.repo, "v1")
		req.Authorization = auth
		_, err := c.Fetch(t.Context(), req)
		e, ok := oci.AsError(err)
		if !ok || e.Status != http.StatusUnauthorized {
			t.Fatalf("Fetch = %v, want 401", err)
		}
		if want := anonymousChallenge(t, reg, req, auth); e.Challenge != want {
			t.Errorf("Challenge = %q, want %q", e.Challenge, want)
		}
	})

}

// credentialsFile writes a Docker config.json with user's credentials for
// registry and returns its path.
func credentialsFile(t *testing.T, registry, user, pass string) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	p := filepath.Join(t.TempDir(), "config.json")
	doc := `{"auths":{"` + registry + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOwnCredentials(t *testing.T) {
	users := map[string]string{"alice": "wonderland"}
	private := map[string][]string{"team/secret": {"alice"}}
	for _, opts := range []registrytest.Options{
		{Token: true, Redirect: true, CDNHostname: "127.0.0.1", Users: users, Private: private},
		{Basic: true, Users: users, Private: private},
	} {
		name := "token"
		if opts.Basic {
			name = "basic"
		}
		t.Run(name, func(t *testing.T) {
			reg, c := fakeRegistry(t, opts, Config{CredentialsFile: credentialsFile(t, testRegistry, "alice", "wonderland")})
			img := seed(t, reg, "team/secret", "v1")
			if err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest); err != nil {
				t.Fatal(err)
			}
			for _, b := range img.blobs {
				if err := fetchVerified(t, c, blobOf(img.repo, b), b); err != nil {
					t.Fatal(err)
				}
			}
			basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))
			for _, q := range reg.Requests() {
				switch {
				case q.Host == registrytest.HostCDN && q.Authorization != "":
					t.Errorf("CDN request carried Authorization %q", q.Authorization)
				case q.Kind == registrytest.KindToken && q.Authorization != basic:
					t.Errorf("token request with Authorization %q, want alice's", q.Authorization)
				}
			}
		})
	}
	t.Run("basic, without credentials: the registry's challenge", func(t *testing.T) {
		reg, c := fakeRegistry(t, registrytest.Options{Basic: true, Users: users}, Config{})
		img := seed(t, reg, "team/app", "v1")
		_, err := c.Fetch(t.Context(), manifestOf(img.repo, "v1"))
		if e, ok := oci.AsError(err); !ok || e.Status != 401 || e.Challenge != `Basic realm="registrytest"` {
			t.Fatalf("Fetch = %v, want 401 with the Basic challenge", err)
		}
	})
}

func TestTokenServerFailureFallsBackToAnonymous(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true}, Config{})
	img := seed(t, reg, "team/app", "v1")
	reg.SetHook(registrytest.Fail(registrytest.On("", registrytest.KindToken, ""), http.StatusServiceUnavailable, 0))
	req := manifestOf(img.repo, "v1")
	_, err := c.Fetch(t.Context(), req)
	e, ok := oci.AsError(err)
	if !ok || e.Status != http.StatusUnauthorized || e.Challenge != anonymousChallenge(t, reg, req, "") {
		t.Fatalf("Fetch = %v, want the registry's 401 to an anonymous client", err)
	}
	// Failed setups are not kept: once the token server is back, it works.
	reg.SetHook(nil)
	if err := fetchVerified(t, c, req, img.manifest); err != nil {
		t.Fatal(err)
	}
}

func TestHeadStaysHead(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true, Redirect: true}, Config{})
	img := seed(t, reg, "team/app", "v1")
	m := manifestOf(img.repo, "v1")
	m.Method = "HEAD"
	b := blobOf(img.repo, img.blobs[1])
	b.Method = "HEAD"
	for _, req := range []*oci.Request{m, b} {
		resp, err := c.Fetch(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		want := img.manifest
		if req.Kind == oci.KindBlob {
			want = req.Reference.Digest
		}
		if resp.Body != nil || resp.Digest != want || resp.Size <= 0 {
			t.Errorf("HEAD %s = %+v, want no body, digest %s and a size", req.Kind, resp, want.Short())
		}
	}
	if n := reg.Count("GET", registrytest.KindManifest, ""); n != 0 {
		t.Errorf("manifest GETs = %d, want 0", n)
	}
	if n := reg.Count("GET", registrytest.KindBlob, "") + reg.Count("", registrytest.KindCDN, ""); n != 0 {
		t.Errorf("blob GETs = %d, want 0", n)
	}
	if n := reg.Count("HEAD", "", ""); n != 2 {
		t.Errorf("HEADs = %d, want 2", n)
	}
}

func TestRangeThroughRedirect(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true, Redirect: true}, Config{})
	img := seed(t, reg, "team/app", "v1")
	d := img.blobs[1]
	full := fetchAll(t, c, blobOf(img.repo, d))
	req := blobOf(img.repo, d)
	req.Offset = 1000
	resp, err := c.Fetch(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	tail := readBody(t, resp)
	if resp.Offset != 1000 || resp.Size != int64(len(full)) || tail != full[1000:] {
		t.Errorf("ranged Fetch: Offset %d, Size %d, %d bytes; want 1000, %d, the last %d bytes",
			resp.Offset, resp.Size, len(tail), len(full), len(full)-1000)
	}
	var ranges []string
	for _, q := range reg.Requests() {
		if q.Ref == string(d) && q.Range != "" {
			ranges = append(ranges, q.Host+" "+q.Range)
		}
	}
	if want := []string{"registry bytes=1000-", "cdn bytes=1000-"}; strings.Join(ranges, ";") != strings.Join(want, ";") {
		t.Errorf("Range sent: %q, want %q", ranges, want)
	}
}

func fetchAll(t *testing.T, c *Client, req *oci.Request) string {
	t.Helper()
	resp, err := c.Fetch(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return readBody(t, resp)
}

func TestRedirectToPrivateAddressRefused(t *testing.T) {
	// Only the registry's host (localhost) is trusted; the CDN is on
	// 127.0.0.1 and nothing lets cacheyd dial a loopback address.
	opts := registrytest.Options{Token: true, Redirect: true, CDNHostname: "127.0.0.1"}
	reg, c := fakeRegistry(t, opts, Config{AllowedHosts: []string{}})
	img := seed(t, reg, "team/app", "v1")
	_, err := c.Fetch(t.Context(), blobOf(img.repo, img.blobs[0]))
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusForbidden || e.Code != oci.CodeDenied || !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch = %v, want 403 DENIED wrapping ErrRefused", err)
	}
	if n := reg.Count("", registrytest.KindCDN, ""); n != 0 {
		t.Errorf("CDN requests = %d, want 0", n)
	}
}
