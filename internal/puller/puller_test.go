package puller

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

func platform(t *testing.T, s string) v1.Platform {
	t.Helper()
	p, err := ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A pull straight from a registry that demands tokens and redirects blobs:
// the challenge is answered, Authorization never reaches the CDN, every
// blob is verified and Observe sees each fetch.
func TestPullFromRegistryWithTokens(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	idx := up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 3, 20<<10)
	var (
		mu       sync.Mutex // guards fetches and progress
		fetches  []Fetch
		progress int64
	)
	p := &Puller{
		Client: up.Client(), Base: up.URL(), Platforms: []v1.Platform{platform(t, "linux/arm64")}, Tokens: true,
		Observe:  func(f Fetch) { mu.Lock(); fetches = append(fetches, f); mu.Unlock() },
		Progress: func(_ Kind, n int64) { mu.Lock(); progress += n; mu.Unlock() },
	}
	res, err := p.Pull(t.Context(), "team/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 6 { // index, manifest, config, 3 layers
		t.Fatalf("fetched %d objects, want 6", len(res.Blobs))
	}
	idxDigest, _ := idx.Digest()
	if res.Blobs[0] != oci.Digest(idxDigest.String()) {
		t.Errorf("first fetch %s, want the index %s", res.Blobs[0], idxDigest)
	}
	if progress != res.Bytes || len(fetches) != 6 {
		t.Errorf("progress %d bytes, %d fetches observed; want %d bytes, 6 fetches", progress, len(fetches), res.Bytes)
	}
	for _, f := range fetches {
		if f.Err != nil || f.FirstByte.Before(f.Start) || f.End.Before(f.FirstByte) || f.Bytes == 0 {
			t.Errorf("fetch %+v", f)
		}
	}
	for _, q := range up.Requests() {
		if q.Host == registrytest.HostCDN && q.Authorization != "" {
			t.Errorf("CDN request carried Authorization: %+v", q)
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindToken, ""); n != 1 {
		t.Errorf("token requests %d, want 1 (the token is kept for the repository)", n)
	}
}

// Without Tokens a challenge is an error, and the realm, another host as
// far as the Puller knows, is never asked.
func TestNoTokensMeansNoRealm(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true})
	up.SeedImage(t, "app", "v1", 1, 10)
	p := &Puller{Client: up.Client(), Base: up.URL()}
	_, err := p.Pull(t.Context(), "app", "v1")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Method != http.MethodHead || se.Kind != KindManifest {
		t.Errorf("pull: %v, want a 401 StatusError for the HEAD", err)
	}
	if n := up.Count("", registrytest.KindToken, ""); n != 0 {
		t.Errorf("token requests %d, want 0", n)
	}
}

// Known skips blobs a node already has; a broken download resumes with
// Range from where it broke.
func TestKnownAndResume(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	img := up.SeedImage(t, "app", "v1", 2, 256<<10)
	layers, _ := img.Layers()
	l0, _ := layers[0].Digest()
	l1, _ := layers[1].Digest()
	up.SetHook(registrytest.Truncate(up.BlobBytes(l1.String()).First(1), 100<<10))

	var resumed []Fetch
	var mu sync.Mutex // guards resumed
	p := &Puller{
		Client: up.Client(), Base: up.URL(), Resume: 1,
		Known: func(d oci.Digest) bool { return string(d) == l0.String() },
		Observe: func(f Fetch) {
			if f.Resumes > 0 {
				mu.Lock()
				resumed = append(resumed, f)
				mu.Unlock()
			}
		},
	}
	res, err := p.Pull(t.Context(), "app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(res.Blobs, oci.Digest(l0.String())) || !slices.Contains(res.Blobs, oci.Digest(l1.String())) {
		t.Errorf("fetched %v: want layer 1 and not the known layer 0", res.Blobs)
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, l0.String()); n != 0 {
		t.Errorf("known layer fetched %d times", n)
	}
	var ranges []string
	for _, q := range up.Requests() {
		if q.Ref == l1.String() {
			ranges = append(ranges, q.Range)
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") || !strings.HasSuffix(ranges[1], "-") {
		t.Errorf("requests for layer 1 had Range %q, want none then bytes=N-", ranges)
	}
	if len(resumed) != 1 || resumed[0].Resumes != 1 || resumed[0].Err != nil {
		t.Errorf("resumed fetches %+v, want layer 1 resumed once", resumed)
	}

	// Without Resume the same break fails the pull.
	up.SetHook(registrytest.Truncate(up.BlobBytes(l1.String()).First(1), 100<<10))
	p = &Puller{Client: up.Client(), Base: up.URL()}
	if _, err := p.Pull(t.Context(), "app", "v1"); err == nil {
		t.Error("a broken download without Resume succeeded")
	}
}

// A server that answers a resumed download with the whole blob (200, not
// 206) restarts the hash: the blob is still verified.
func TestResumeAnsweredWhole(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	img := up.SeedImage(t, "app", "v1", 1, 64<<10)
	layers, _ := img.Layers()
	l0, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	up.SetHook(registrytest.Chain(
		registrytest.Truncate(up.BlobBytes(l0.String()).First(1), 10<<10),
		func(w http.ResponseWriter, req *http.Request) bool {
			req.Header.Del("Range")
			registrytest.Pass(w, req)
			return true
		},
	))
	var fetch Fetch
	p := &Puller{Client: up.Client(), Base: up.URL(), Resume: 1, Observe: func(f Fetch) { fetch = f }}
	n, err := p.Blob(t.Context(), "app", v1.Descriptor{Digest: l0, Size: size})
	if err != nil || n != size {
		t.Fatalf("Blob = %d, %v; want %d bytes", n, err, size)
	}
	if fetch.Resumes != 1 || fetch.Bytes != 10<<10+size {
		t.Errorf("fetch %+v: want 1 resume, %d bytes over both answers", fetch, 10<<10+size)
	}
}

// Blob checks the digest and the size; BlobUnverified only the size.
func TestBlobChecks(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	img := up.SeedImage(t, "app", "v1", 1, 8<<10)
	layers, _ := img.Layers()
	l0, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	desc := v1.Descriptor{Digest: l0, Size: size}
	p := &Puller{Client: up.Client(), Base: up.URL()}

	up.SetHook(registrytest.Corrupt(up.BlobBytes(l0.String()), 100))
	if _, err := p.Blob(t.Context(), "app", desc); !errors.Is(err, ErrDigestMismatch) || !strings.HasPrefix(err.Error(), "blob sha256:") {
		t.Errorf("Blob of a corrupt body: %v, want a blob digest mismatch", err)
	}
	if n, err := p.BlobUnverified(t.Context(), "app", desc); err != nil || n != size {
		t.Errorf("BlobUnverified of a corrupt body = %d, %v; want %d bytes and no error", n, err, size)
	}
	up.SetHook(registrytest.Fail(up.BlobBytes(l0.String()), http.StatusServiceUnavailable, 0))
	if _, err := p.Blob(t.Context(), "app", desc); err == nil || !strings.HasPrefix(err.Error(), "GET blob sha256:") {
		t.Errorf("Blob refused: %v, want the refusal alone (no bytes were read)", err)
	}
	up.SetHook(nil)
	for _, wrong := range []int64{size - 1, size + 1} {
		d := v1.Descriptor{Digest: l0, Size: wrong}
		if _, err := p.BlobUnverified(t.Context(), "app", d); err == nil || !strings.Contains(err.Error(), "its descriptor says") {
			t.Errorf("BlobUnverified with size %d of %d: %v, want a size error", wrong, size, err)
		}
		if _, err := p.Blob(t.Context(), "app", d); err == nil {
			t.Errorf("Blob with size %d of %d: no error", wrong, size)
		}
	}
}

func TestStatusError(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{PullLimit: 1})
	up.SeedImage(t, "app", "v1", 1, 10)
	p := &Puller{Client: up.Client(), Base: up.URL()}
	if _, err := p.Pull(t.Context(), "app", "v1"); err != nil {
		t.Fatal(err)
	}
	_, err := p.Pull(t.Context(), "app", "v1")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || !errors.Is(err, ErrStatus) {
		t.Fatalf("pull over the limit: %v, want a 429 StatusError", err)
	}
	if want := "GET manifest " + se.Ref[:len("sha256:")+12] + ": 429 Too Many Requests: TOOMANYREQUESTS "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q", err, want)
	}
	if se.Kind != KindManifest || se.Repository != "app" || se.Message == "" {
		t.Errorf("StatusError %+v: want a manifest of app and the registry's message", se)
	}

	_, err = p.Pull(t.Context(), "gone", "v1")
	if err == nil || err.Error() != "HEAD manifest v1: 404 Not Found" {
		t.Errorf("pull of a missing image: %v, want HEAD manifest v1: 404 Not Found", err)
	}
}

// Through a cacheyd every request names the registry with ?ns=.
func TestNamespace(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Redirect: true})
	up.SeedImage(t, "app", "v1", 1, 10)
	p := &Puller{Client: up.Client(), Base: up.URL(), Namespace: "ghcr.io"}
	if _, err := p.Pull(t.Context(), "app", "v1"); err != nil {
		t.Fatal(err)
	}
	for _, q := range up.Requests() {
		if q.Host == registrytest.HostRegistry && q.Query != "ns=ghcr.io" {
			t.Errorf("%s %s with query %q, want ns=ghcr.io", q.Method, q.Path, q.Query)
		}
	}
}

// A HEAD that names no digest is asked again with a GET, and the digest
// is that of the body.
func TestResolveWithoutDigestHeader(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	img := up.SeedImage(t, "app", "v1", 1, 10)
	up.SetHook(func(w http.ResponseWriter, req *http.Request) bool {
		if req.Method != http.MethodHead {
			return false
		}
		w.WriteHeader(http.StatusOK)
		return true
	})
	p := &Puller{Client: up.Client(), Base: up.URL()}
	d, err := p.Resolve(t.Context(), "app", "v1")
	want, _ := img.Digest()
	if err != nil || string(d) != want.String() {
		t.Errorf("Resolve = %s, %v; want %s", d, err, want)
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, "v1"); n != 1 {
		t.Errorf("GETs of the tag = %d, want 1", n)
	}
}

func TestParseParams(t *testing.T) {
	got := parseParams(`realm="http://a/token",service="reg",scope="repository:x/y:pull,push", error=invalid_token`)
	want := map[string]string{"realm": "http://a/token", "service": "reg", "scope": "repository:x/y:pull,push", "error": "invalid_token"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
