package app

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// countingKeeper counts the commits it is told of, by digest.
type countingKeeper struct {
	mu     sync.Mutex // guards kept and marked
	kept   map[oci.Digest]int
	marked int // entries told with a private source
}

func (k *countingKeeper) Keep(e tier.Entry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kept[e.Digest]++
	if e.Marked() {
		k.marked++
	}
}

// TestKeeperGetsEveryVerifiedPublicCommit: a keeper added where cacheyd is
// wired is told of each public object once, however many clients asked
// for it at once and however often it is served again; of nothing that
// failed verification, and of nothing fetched with a client's credentials.
func TestKeeperGetsEveryVerifiedPublicCommit(t *testing.T) {
	const clients = 8
	up := registrytest.New(t, registrytest.Options{
		Token: true, Users: map[string]string{"alice": "pw"}, Private: map[string][]string{"team/secret": {"alice"}},
	})
	random := func(n int) []byte {
		b, err := registrytest.RandomTar(int64(n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	small, large, corrupt, secret := random(4<<10), random(3<<20), random(64<<10), random(8<<10)
	dSmall := oci.Digest(up.SeedBlob(t, "library/app", small).String())
	dLarge := oci.Digest(up.SeedBlob(t, "library/app", large).String())
	dCorrupt := oci.Digest(up.SeedBlob(t, "library/app", corrupt).String())
	dSecret := oci.Digest(up.SeedBlob(t, "team/secret", secret).String())
	img := up.SeedImage(t, "library/app", "v1", 1, 1<<10)
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dManifest := oci.Digest(h.String())
	up.SetHook(registrytest.Corrupt(up.BlobBytes(string(dCorrupt)), 100))

	keeper := &countingKeeper{kept: map[oci.Digest]int{}}
	cfg := Defaults()
	cfg.Listen, cfg.ShutdownTimeout = "127.0.0.1:0", 5*time.Second
	cfg.Cache.Dir, cfg.Cache.MemoryBytes, cfg.Cache.DiskBytes = t.TempDir(), 16<<20, 1<<30
	cfg.Cache.FillRetries = -1 // a corrupt fill fails at once
	cfg.Upstream.RegistryURLs = map[string]string{up.Host(): up.URL()}
	cfg.Keepers = []cache.Keeper{keeper}
	base, stop, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop() })

	get := func(path, auth string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path+"?ns="+up.Host(), nil)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	blob := func(repo string, dg oci.Digest) string { return "/v2/" + repo + "/blobs/" + string(dg) }

	// Public content, each asked by many clients at once, then once more.
	var wg sync.WaitGroup
	for range clients {
		for dg, want := range map[oci.Digest][]byte{dSmall: small, dLarge: large} {
			wg.Go(func() {
				if code, got, err := get(blob("library/app", dg), ""); code != http.StatusOK || err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %d, %d bytes, %v; want 200 and its %d bytes", dg.Short(), code, len(got), err, len(want))
				}
			})
		}
	}
	wg.Wait()
	for range 2 {
		for _, dg := range []oci.Digest{dSmall, dLarge} {
			if code, _, err := get(blob("library/app", dg), ""); code != http.StatusOK || err != nil {
				t.Errorf("%s again: %d, %v", dg.Short(), code, err)
			}
		}
		if code, _, err := get("/v2/library/app/manifests/v1", ""); code != http.StatusOK || err != nil {
			t.Errorf("manifest by tag: %d, %v", code, err)
		}
	}

	// Content that fails verification: never whole, never kept.
	if code, got, err := get(blob("library/app", dCorrupt), ""); code == http.StatusOK && err == nil && bytes.Equal(got, corrupt) {
		t.Errorf("corrupt blob served whole")
	}

	// Private content, fetched with alice's own token.
	if code, _, _ := get(blob("team/secret", dSecret), ""); code != http.StatusUnauthorized {
		t.Errorf("private blob, anonymous: %d, want 401", code)
	}
	token := userToken(t, up, "alice", "pw", "team/secret")
	if code, got, err := get(blob("team/secret", dSecret), "Bearer "+token); code != http.StatusOK || err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("private blob with alice's token: %d, %d bytes, %v", code, len(got), err)
	}

	// Stopped, cacheyd has finished every fill: what the keeper was told is
	// all it will be.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	keeper.mu.Lock()
	defer keeper.mu.Unlock()
	if want := map[oci.Digest]int{dSmall: 1, dLarge: 1, dManifest: 1}; !maps.Equal(keeper.kept, want) {
		t.Errorf("keeper told %v, want %v (each public object once; not %s, corrupt, nor %s, private)",
			keeper.kept, want, dCorrupt.Short(), dSecret.Short())
	}
	if keeper.marked != 0 {
		t.Errorf("keeper told of %d objects with a private source, want none", keeper.marked)
	}
}

// userToken is the pull token reg's realm gives user (password pw) for repo.
func userToken(t *testing.T, reg *registrytest.Registry, user, pw, repo string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+"/token?service=registrytest&scope=repository:"+repo+":pull", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pw)
	resp, err := http.DefaultClient.Do(req)
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
