package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
// The registry is on localhost:<port>, trusted as a mapped URL; its CDN,
// on another loopback port, must be allowed by cfg as its host:port, which
// it is unless cfg says otherwise.
func fakeRegistry(t *testing.T, opts registrytest.Options, cfg Config) (*registrytest.Registry, *Client) {
	t.Helper()
	reg := registrytest.New(t, opts)
	cfg.RegistryURLs = map[string]string{testRegistry: reg.URL()}
	if cfg.AllowedHosts == nil {
		cfg.AllowedHosts = []string{reg.CDNHost()}
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
	// Every fetch came from the CDN, the first of each blob through the
	// registry's redirect, later ones often straight (locations.go).
	if n := reg.Count("GET", registrytest.KindCDN, ""); n != 8*6 {
		t.Errorf("CDN GETs = %d, want %d", n, 8*6)
	}
	if n := reg.Count("GET", registrytest.KindBlob, ""); n < 6 || n > 8*6 {
		t.Errorf("registry blob GETs = %d, want one to %d", n, 8*6)
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
	// The whole fetch was redirected; the ranged one went to the CDN at
	// once, where the first was sent (locations.go).
	if want := []string{"cdn bytes=1000-"}; strings.Join(ranges, ";") != strings.Join(want, ";") {
		t.Errorf("Range sent: %q, want %q", ranges, want)
	}
}

// TestRedirectResolvedOncePerBlob: a blob fetched in many ranged requests
// is redirected once; the others go to the CDN directly, without
// Authorization. A location learnt with a client's credentials is not used
// for another's, and one that stops serving is forgotten.
func TestRedirectResolvedOncePerBlob(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true, Redirect: true}, Config{})
	img := seed(t, reg, "team/app", "v1")
	d := img.blobs[1]
	full := fetchAll(t, c, blobOf(img.repo, d))
	for off := int64(0); off+100 <= int64(len(full)); off += 100 {
		req := blobOf(img.repo, d)
		req.Offset, req.Length = off, 100
		resp, err := c.Fetch(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp); got != full[off:off+100] {
			t.Fatalf("range at %d differs", off)
		}
	}
	if n := reg.Count("GET", registrytest.KindBlob, string(d)); n != 1 {
		t.Errorf("registry GETs of the blob = %d, want 1 (the redirect, once)", n)
	}
	for _, q := range reg.Requests() {
		if q.Host == registrytest.HostCDN && q.Authorization != "" {
			t.Errorf("CDN request carried Authorization")
		}
	}
	// Another credential asks the registry itself.
	other := blobOf(img.repo, d)
	other.Authorization = "Bearer someone"
	if resp, err := c.Fetch(t.Context(), other); err == nil {
		resp.Body.Close()
	}
	if n := reg.Count("GET", registrytest.KindBlob, string(d)); n != 2 {
		t.Errorf("registry GETs after another credential's = %d, want 2", n)
	}
	// The CDN stops serving the location once: the registry is asked again.
	reg.SetHook(registrytest.Fail(registrytest.On("GET", registrytest.KindCDN, "").First(1), http.StatusForbidden, 0))
	if got := fetchAll(t, c, blobOf(img.repo, d)); got != full {
		t.Fatal("blob after a refused location differs")
	}
	if n := reg.Count("GET", registrytest.KindBlob, string(d)); n != 3 {
		t.Errorf("registry GETs after a refused location = %d, want 3", n)
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
