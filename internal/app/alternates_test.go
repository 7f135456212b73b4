package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/sources"
)

// startWithAlternate starts cacheyd with cfg fetching up's registry, with
// alt serving up's content by digest under the path prefix "mirror".
func startWithAlternate(t *testing.T, cfg Config, up, alt *registrytest.Registry) string {
	t.Helper()
	cfg.Listen, cfg.ShutdownTimeout = "127.0.0.1:0", 5*time.Second
	cfg.Cache.Dir, cfg.Cache.MemoryBytes, cfg.Cache.DiskBytes = t.TempDir(), 16<<20, 1<<30
	cfg.Upstream.RegistryURLs = map[string]string{up.Host(): up.URL()}
	cfg.Alternates = []Alternate{{Registry: up.Host(), URL: alt.URL() + "/mirror"}}
	base, stop, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop() })
	return base
}

// seedImages seeds n images of layers layers each at up, as
// library/app<i>:v1, and the first held of them at alt, under mirror/.
func seedImages(t *testing.T, up, alt *registrytest.Registry, n, layers, held int) []v1.Image {
	t.Helper()
	imgs := make([]v1.Image, n)
	for i := range imgs {
		repo := fmt.Sprintf("library/app%d", i)
		imgs[i] = up.SeedImage(t, repo, "v1", layers, 4<<10)
		if i < held {
			alt.WriteImage(t, "mirror/"+repo, "v1", imgs[i])
		}
	}
	up.Reset()
	alt.Reset()
	return imgs
}

// pullAll pulls every image by tag through cacheyd from clients clients
// at once, and returns how many pulls failed.
func pullAll(t *testing.T, base, ns string, images, clients int) int {
	t.Helper()
	p := &puller.Puller{Base: base, Namespace: ns}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards failed
	failed := 0
	for range clients {
		for i := range images {
			wg.Go(func() {
				if _, err := p.Pull(t.Context(), fmt.Sprintf("library/app%d", i), "v1"); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return failed
}

// TestAlternatesSpareTheRegistry: a burst of clients pulling several
// images through a cacheyd with an alternate costs the registry one HEAD
// per tag and nothing else when the alternate holds everything, and
// exactly the manifest and blobs of the images it lacks otherwise; an
// alternate that fails (a 503, down, too slow to answer) costs the pulls
// nothing but the registry's fetches. Every pull verifies what it got.
func TestAlternatesSpareTheRegistry(t *testing.T) {
	const images, layers, clients = 3, 2, 6
	for _, tt := range []struct {
		name  string
		held  int    // images the alternate holds
		fault string // "503", "down", "slow": the alternate fails so
	}{
		{"the alternate holds everything", images, ""},
		{"the alternate lacks one image", images - 1, ""},
		{"the alternate holds nothing", 0, ""},
		{"the alternate answers 503", images, "503"},
		{"the alternate is down", images, "down"},
		{"the alternate never answers", images, "slow"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{})
			alt := registrytest.New(t, registrytest.Options{})
			seedImages(t, up, alt, images, layers, tt.held)
			cfg := Defaults()
			missing, altBlobs := images-tt.held, images*(layers+1)
			switch tt.fault {
			case "503":
				alt.SetHook(registrytest.Fail(nil, http.StatusServiceUnavailable, 0))
			case "down":
				alt.Close()
				altBlobs = 0
			case "slow":
				alt.SetHook(registrytest.Hold(registrytest.On("", registrytest.KindBlob, ""), make(chan struct{})))
				cfg.Upstream.ResponseHeaderTimeout = 500 * time.Millisecond
			}
			if tt.fault != "" {
				missing = images
			}
			base := startWithAlternate(t, cfg, up, alt)

			if n := pullAll(t, base, up.Host(), images, clients); n != 0 {
				t.Fatalf("%d pulls failed", n)
			}
			if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n != images {
				t.Errorf("the registry got %d HEADs of tags, want %d (one per image)", n, images)
			}
			manifests := missing
			if tt.fault == "slow" {
				manifests = 0 // only its blobs are held
			}
			if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != manifests {
				t.Errorf("the registry got %d manifest GETs, want %d", n, manifests)
			}
			if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != missing*(layers+1) {
				t.Errorf("the registry got %d blob GETs, want %d (config and layers of the images the alternate does not serve)", n, missing*(layers+1))
			}
			// Content by digest only: the alternate never resolves a tag.
			if n := alt.Count("", registrytest.KindManifest, "v1"); n != 0 {
				t.Errorf("the alternate got %d requests for the tag", n)
			}
			// Each blob asked once, whether it holds it or not (a 404).
			if n := alt.Count(http.MethodGet, registrytest.KindBlob, ""); n != altBlobs {
				t.Errorf("the alternate got %d blob GETs, want %d", n, altBlobs)
			}
		})
	}
}

// TestACorruptAlternateServesNothingWrong: an alternate whose copy of one
// layer has a wrong byte fails the fill that read it (a cache never
// completes wrong bytes), and is then passed over for that digest: the
// clients' next attempt gets the layer from the registry, whose only blob
// fetches are that layer's (its tail, asked when the alternate's body
// failed its verification, and the whole of it on the next attempt).
func TestACorruptAlternateServesNothingWrong(t *testing.T) {
	const clients = 4
	up, alt, bad := withACorruptLayer(t)
	base := startWithAlternate(t, Defaults(), up, alt)

	// The pulls that read the corrupt layer fail (the puller verifies);
	// none completes it wrong.
	pullAll(t, base, up.Host(), 1, clients)
	if n := pullAll(t, base, up.Host(), 1, clients); n != 0 {
		t.Fatalf("%d pulls failed on the next attempt", n)
	}
	if n := alt.Count(http.MethodGet, registrytest.KindBlob, bad.String()); n != 1 {
		t.Errorf("the alternate was asked for the corrupt layer %d times, want once", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, bad.String()); n != 2 {
		t.Errorf("the registry got %d GETs of the corrupt layer, want 2", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != 2 {
		t.Errorf("the registry got %d blob GETs, want 2 (the corrupt layer's only)", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != 0 {
		t.Errorf("the registry got %d manifest GETs, want 0", n)
	}
}

// TestPrivateContentNeverReachesAnAlternate: content a client fetches with
// its own credentials goes to its registry only, even when an alternate
// holds the same digests: the alternate is asked nothing at all.
func TestPrivateContentNeverReachesAnAlternate(t *testing.T) {
	const clients = 4
	up := registrytest.New(t, registrytest.Options{
		Token: true, Users: map[string]string{"alice": "pw"}, Private: map[string][]string{"team/secret": {"alice"}},
	})
	alt := registrytest.New(t, registrytest.Options{})
	img := up.SeedImage(t, "team/secret", "v1", 2, 4<<10)
	alt.WriteImage(t, "mirror/team/secret", "v1", img)
	up.Reset()
	alt.Reset()
	base := startWithAlternate(t, Defaults(), up, alt)

	token := userToken(t, up, "alice", "pw", "team/secret")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/v2/team/secret/manifests/v1", "/v2/team/secret/manifests/" + h.String(), "/v2/team/secret/blobs/" + m.Config.Digest.String()}
	for _, l := range m.Layers {
		paths = append(paths, "/v2/team/secret/blobs/"+l.Digest.String())
	}
	var wg sync.WaitGroup
	for range clients {
		for _, path := range paths {
			wg.Go(func() {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path+"?ns="+up.Host(), nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Accept", string(m.MediaType))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || err != nil {
					t.Errorf("%s with alice's token: %d, %v", path, resp.StatusCode, err)
				}
			})
		}
	}
	wg.Wait()
	if n := len(alt.Requests()); n != 0 {
		t.Errorf("the alternate got %d requests for private content, want none", n)
	}
}

// TestACorruptAlternateInRangesIsPassedOver: a layer fetched from an
// alternate in ranges is verified only when the fill ends; when it fails
// there, the alternate is held to account for that digest, and the next
// pulls of the layer come from the registry without asking it again.
func TestACorruptAlternateInRangesIsPassedOver(t *testing.T) {
	const clients = 4
	up, alt, bad := withACorruptLayer(t)
	cfg := Defaults()
	cfg.Cache.FillChunk = 1 << 10 // the 4 KiB layers come in ranges
	base := startWithAlternate(t, cfg, up, alt)

	pullAll(t, base, up.Host(), 1, clients) // those that read the corrupt layer fail
	asked := alt.Count(http.MethodGet, registrytest.KindBlob, bad.String())
	if asked == 0 {
		t.Fatal("the alternate was not asked for the corrupt layer")
	}
	if n := pullAll(t, base, up.Host(), 1, clients); n != 0 {
		t.Fatalf("%d pulls failed on the next attempt", n)
	}
	if n := alt.Count(http.MethodGet, registrytest.KindBlob, bad.String()) - asked; n != 0 {
		t.Errorf("the alternate was asked for the corrupt layer %d more times after its bytes failed", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, bad.String()); n == 0 {
		t.Error("the registry never sent the corrupt layer's bytes")
	}
}

// TestFallbackAsksTheRegistryFirst: with --alternate-mode fallback, a
// burst of pulls costs a healthy registry what it costs without
// alternates, and the alternate nothing; once the registry's pull budget
// is spent (cacheyd then answers its manifest GETs 429 itself) or it
// answers manifest GETs 503, the manifests by digest come from the
// alternate, and the registry gets not one more manifest GET (blobs, which
// it does not count, still come from it). Below --budget-reserve, manifests
// by digest go to the alternate first, and to the registry only when the
// alternate lacks them.
func TestFallbackAsksTheRegistryFirst(t *testing.T) {
	const images, layers, clients = 3, 2, 6
	for _, tt := range []struct {
		name      string
		limit     int   // the registry's pull limit (0: none)
		spent     bool  // its limit spent before the pulls
		reserve   int64 // --budget-reserve
		fault     bool  // it answers manifest GETs 503
		held      int   // images the alternate holds
		manifests int   // the registry's manifest GETs, a spending one included
		alternate int   // the alternate's manifest GETs
	}{
		{"a healthy registry", 0, false, 0, false, images, images, 0},
		{"a healthy registry with budget left", 10, false, 0, false, images, images, 0},
		{"the pull limit spent", 1, true, 0, false, images, 1, images},
		{"the registry answers 503", 0, false, 0, true, images, images, images},
		{"below the reserve", 10, false, 20, false, images, 0, images},
		{"below the reserve, the alternate lacks one image", 10, false, 20, false, images - 1, 1, images},
		{"above the reserve", 30, false, 20, false, images, images, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{PullLimit: tt.limit})
			alt := registrytest.New(t, registrytest.Options{})
			seedImages(t, up, alt, images, layers, tt.held)
			if tt.spent {
				// Another client of the registry spends cacheyd's budget.
				resp, err := up.Client().Get(up.URL() + "/v2/library/app0/manifests/v1")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			if tt.fault {
				up.SetHook(registrytest.Fail(registrytest.On(http.MethodGet, registrytest.KindManifest, ""), http.StatusServiceUnavailable, 0))
			}
			cfg := Defaults()
			cfg.AlternateMode, cfg.BudgetReserve = sources.Fallback, tt.reserve
			base := startWithAlternate(t, cfg, up, alt)

			if n := pullAll(t, base, up.Host(), images, clients); n != 0 {
				t.Fatalf("%d pulls failed", n)
			}
			if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != tt.manifests {
				t.Errorf("the registry got %d manifest GETs, want %d", n, tt.manifests)
			}
			if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != images*(layers+1) {
				t.Errorf("the registry got %d blob GETs, want %d (a blob goes to it unless it fails)", n, images*(layers+1))
			}
			if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n != images {
				t.Errorf("the registry got %d HEADs of tags, want %d (one per image)", n, images)
			}
			if n := alt.Count(http.MethodGet, registrytest.KindManifest, ""); n != tt.alternate {
				t.Errorf("the alternate got %d manifest GETs, want %d", n, tt.alternate)
			}
			// Blobs go to the registry unless it fails; with nothing to ask
			// the alternate, it is not even pinged.
			if n := alt.Count("", registrytest.KindBlob, ""); n != 0 {
				t.Errorf("the alternate got %d blob requests, want 0", n)
			}
			if n := len(alt.Requests()); tt.alternate == 0 && n != 0 {
				t.Errorf("the alternate got %d requests, want 0", n)
			}
			if _, refused := up.Pulls(); refused != 0 {
				t.Errorf("the registry refused %d pulls: cacheyd asked past its spent budget", refused)
			}
		})
	}
}

// TestAlternateModesAndReserves: a reserve needs fallback mode and is
// never negative; an unknown mode is refused.
func TestAlternateModesAndReserves(t *testing.T) {
	for _, tt := range []struct {
		mode    sources.AlternateMode
		reserve int64
		ok      bool
	}{
		{"", 0, true},
		{sources.Prefer, 0, true},
		{sources.Fallback, 0, true},
		{sources.Fallback, 100, true},
		{sources.Fallback, -1, false},
		{sources.Prefer, 100, false},
		{"sometimes", 0, false},
	} {
		cfg := Defaults()
		cfg.AlternateMode, cfg.BudgetReserve = tt.mode, tt.reserve
		if _, err := alternates(cfg); (err == nil) != tt.ok {
			t.Errorf("mode %q, reserve %d: %v, want ok %v", tt.mode, tt.reserve, err, tt.ok)
		}
	}
}

// withACorruptLayer seeds one image of two layers at a registry and at its
// alternate, which corrupts the first layer's bytes; it returns both and
// that layer's digest.
func withACorruptLayer(t *testing.T) (up, alt *registrytest.Registry, bad v1.Hash) {
	t.Helper()
	up = registrytest.New(t, registrytest.Options{})
	alt = registrytest.New(t, registrytest.Options{})
	imgs := seedImages(t, up, alt, 1, 2, 1)
	layers, err := imgs[0].Layers()
	if err != nil {
		t.Fatal(err)
	}
	if bad, err = layers[0].Digest(); err != nil {
		t.Fatal(err)
	}
	alt.SetHook(registrytest.Corrupt(alt.BlobBytes(bad.String()), 100))
	return up, alt, bad
}
