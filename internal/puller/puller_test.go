package puller

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

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
		Client: up.Client(), Base: up.URL(), Platform: "linux/arm64",
		Observe:  func(f Fetch) { mu.Lock(); fetches = append(fetches, f); mu.Unlock() },
		Progress: func(n int64) { mu.Lock(); progress += n; mu.Unlock() },
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
		t.Errorf("pull over the limit: %v, want a 429 StatusError", err)
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
