//go:build linux

package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestAlternateServesASpentRegistry is a node of containerd 2 pulling cold
// through a cacheyd whose registry has no pull left (every manifest GET is
// answered 429 with a remaining budget of 0, HEADs still answer), and whose
// alternate for it is a second, real registry process (CNCF distribution)
// holding the same image by digest only. The pull completes with every
// digest verified by containerd. With --alternate-mode prefer the registry
// sees nothing but the tag's HEAD (and its token), and the alternate
// serves the manifest and every blob once each, whole. With fallback the
// registry is asked first for content by digest: the blobs come from it
// (Docker Hub counts no blob), while the manifest's GET is held by cacheyd
// itself (the HEAD stated a budget of 0) and comes from the alternate; no
// pull is counted either way.
func TestAlternateServesASpentRegistry(t *testing.T) {
	bin2 := containerdtest.V2Bin(t)
	registryBin(t)
	bin := buildCacheyd(t)
	for _, tt := range []struct {
		mode          string
		blobsFromAlt  bool    // else from the registry (its CDN), once each
		heldManifests float64 // manifest GETs cacheyd answered 429 itself
	}{
		{mode: "prefer", blobsFromAlt: true},
		{mode: "fallback", heldManifests: 1},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true, PullLimit: 1})
			const repo, tag = "e2e/alternate", "v1"
			img := up.SeedImage(t, repo, tag, 3, 300<<10)
			im := imageOf(t, up.Host(), repo, tag, img)
			spendPull(t, up, im.ref)
			alt := startDistribution(t)
			alt.push(t, repo, img)

			seen := watchAgents(up)
			upMark, altMark := len(up.Requests()), alt.access.mark()
			cy := startCacheyd(t, bin, "--cache-dir", t.TempDir(),
				"--registry-url", up.Host()+"="+up.URL(), "--allow-registry", up.CDNHost(),
				"--alternate", up.Host()+"="+alt.url(),
				"--alternate-mode", tt.mode)
			hosts := t.TempDir()
			containerdtest.WriteDefaultHostsDir(t, hosts, cy.url())
			node := containerdtest.StartWith(t, containerdtest.Config{Namespace: "e2e", Bin: bin2, HostsDir: hosts,
				MaxConcurrentDownloads: 3, ConcurrentLayerFetchBuffer: 64 << 10})

			pull(t, node, hosts, im.ref)
			checkContent(t, node, im)
			checkAllFromCacheyd(t, seen)

			// The registry: the tag's HEAD (uncounted), and the blobs
			// only where the mode sends them there; never a manifest GET.
			wantUp := map[string]int{"HEAD manifest " + tag: 1}
			// The alternate: content by digest, each digest once.
			wantAlt := map[string]int{"GET manifests/" + im.manifest: 1}
			for _, d := range im.blobs {
				if tt.blobsFromAlt {
					wantAlt["GET blobs/"+d] = 1
				} else {
					wantUp["GET blob "+d], wantUp["GET cdn "+d] = 1, 1
				}
			}
			gotUp := map[string]int{}
			for _, r := range up.Requests()[upMark:] {
				if r.Kind != registrytest.KindBase && r.Kind != registrytest.KindToken {
					gotUp[r.Method+" "+r.Kind+" "+r.Ref]++
				}
			}
			if !maps.Equal(gotUp, wantUp) {
				t.Errorf("the registry got %v, want %v:%s", gotUp, wantUp, describe(up.Requests()[upMark:]))
			}
			if counted, refused := up.Pulls(); counted != 1 || refused != 0 {
				t.Errorf("the registry counted %d pulls and refused %d, want the test's own 1 and none refused", counted, refused)
			}
			checkAlternateServed(t, alt, altMark, img, wantAlt)

			for _, m := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"cacheyd_upstream_pulls_total", map[string]string{"registry": up.Host()}, 0},
				{"cacheyd_upstream_ratelimit_held_total", map[string]string{"registry": up.Host()}, tt.heldManifests},
				{"cacheyd_source_failures_total", map[string]string{"source": "registry", "reason": "limited"}, tt.heldManifests},
				{"cacheyd_source_failures_total", map[string]string{"source": "alternate"}, 0},
			} {
				if got := cy.metric(t, m.name, m.labels); got != m.want {
					t.Errorf("%s %v = %v, want %v", m.name, m.labels, got, m.want)
				}
			}
		})
	}
}

// checkAlternateServed waits (bounded) until the alternate's access log,
// after mark, shows every request of want ("GET manifests/<digest>" or
// "GET blobs/<digest>", in img's repository, to its count), then fails t
// unless that is all it shows besides the version check (GET /v2/), every
// answer a 200 (or a 206 of a blob) with the whole object as its body.
func checkAlternateServed(t *testing.T, alt *distribution, mark int, img v1.Image, want map[string]int) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// What each object's whole body is.
	size := map[string]int64{"manifests/" + digest.String(): int64(len(raw))}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		size["blobs/"+d.Digest.String()] = d.Size
	}
	count := func() (map[string]int, []string) {
		got, wrong := map[string]int{}, []string(nil)
		for _, r := range alt.requests(mark) {
			if r.method == http.MethodGet && r.path == "/v2/" {
				continue
			}
			_, object, _ := strings.Cut(r.path, "/e2e/alternate/")
			key := r.method + " " + object
			got[key]++
			whole := r.status == http.StatusOK || (r.status == http.StatusPartialContent && strings.HasPrefix(object, "blobs/"))
			if !whole || r.bytes != size[object] {
				wrong = append(wrong, fmt.Sprintf("%s %s: %d, %d bytes (the object is %d)", r.method, r.path, r.status, r.bytes, size[object]))
			}
		}
		return got, wrong
	}
	alt.access.waitFor(10*time.Second, func() bool {
		got, _ := count()
		for k, n := range want {
			if got[k] < n {
				return false
			}
		}
		return true
	})
	got, wrong := count()
	if !maps.Equal(got, want) {
		t.Errorf("the alternate served %v, want %v", got, want)
	}
	for _, w := range wrong {
		t.Errorf("the alternate did not serve a whole object in one answer: %s", w)
	}
}

// spendPull makes the one manifest GET of ref that up's pull limit of 1
// allows, as a client of the registry itself: from then on, every manifest
// GET is answered 429 with a budget of 0 left.
func spendPull(t *testing.T, up *registrytest.Registry, ref string) {
	t.Helper()
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(tag, remote.WithContext(t.Context()), remote.WithTransport(up.Client().Transport)); err != nil {
		t.Fatalf("e2e: the registry's one pull: %v", err)
	}
	if counted, _ := up.Pulls(); counted != 1 {
		t.Fatalf("e2e: the registry counted %d pulls, want its limit, 1", counted)
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != 1 {
		t.Fatalf("e2e: the registry got %d manifest GETs to spend its budget, want 1", n)
	}
}
