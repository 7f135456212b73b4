package main

import (
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// testShutdown bounds a test cacheyd's graceful stop. A connection a client
// opened but never sent a request on counts as idle only five seconds after
// it was accepted (as in net/http), so a stop may wait that long for one of
// the pullers' spare connections: the bound leaves room beyond it on a
// loaded machine, where a stop that waits is not a fault.
const testShutdown = 15 * time.Second

// startCacheyd runs cacheyd in-process on a loopback port with the given
// upstream mapped and its CDN allowed (--allow-registry <CDN host:port>:
// a redirect to loopback is followed only to an allowed host:port), and
// returns its base URL. It stops at test cleanup.
func startCacheyd(t *testing.T, up *registrytest.Registry, dir string) string {
	t.Helper()
	return startCacheydWith(t, dir, map[string]string{up.Host(): up.URL()}, up.CDNHost())
}

// startCacheydWith runs cacheyd with the given --registry-url mappings and
// --allow-registry names.
func startCacheydWith(t *testing.T, dir string, urls map[string]string, allow ...string) string {
	t.Helper()
	base, stop := startCacheydStoppable(t, dir, urls, allow...)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("cacheyd stopped with: %v", err)
		}
	})
	return base
}

// startCacheydStoppable runs cacheyd in-process and returns its base URL and
// a stop function that begins a graceful shutdown (as SIGTERM does) and
// waits for it; stop is safe to call more than once.
func startCacheydStoppable(t *testing.T, dir string, urls map[string]string, allow ...string) (string, func() error) {
	t.Helper()
	flags := serveFlags{
		Listen: "127.0.0.1:0", CacheDir: dir, MemoryBytes: 64 << 20, MemoryMaxObject: 1 << 20,
		DiskBytes: 1 << 30, DefaultRegistry: "docker.io", ShutdownTimeout: testShutdown,
		LogLevel: "info", LogFormat: "text", RegistryURL: urls, AllowRegistry: allow,
	}
	base, stop, err := startFlags(t, flags)
	if err != nil {
		t.Fatalf("cacheyd did not start: %v", err)
	}
	return base, stop
}

// TestBurstOfColdPullsFetchesEachBlobOnce is the headline: 50 nodes pulling
// the same multi-layer, multi-arch image at once through a cold cacheyd make
// exactly one upstream GET per blob and per manifest digest, and every node
// gets every byte, digest-verified.
func TestBurstOfColdPullsFetchesEachBlobOnce(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 4, 256<<10)
	up.Reset()
	base := startCacheyd(t, up, t.TempDir())

	const nodes = 50
	results := make([]*puller.Result, nodes)
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &puller.Puller{Client: client, Base: base, Namespace: up.Host(), Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}}}
			res, err := p.Pull(t.Context(), "team/app", "v1")
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := sortedDigests(results[0].Blobs)
	if len(want) != 7 { // index, manifest, config, 4 layers
		t.Fatalf("a pull fetched %d objects, want 7", len(want))
	}
	for i, r := range results {
		if got := sortedDigests(r.Blobs); !equal(got, want) || r.Bytes != results[0].Bytes {
			t.Errorf("node %d fetched %v (%d bytes), node 0 %v (%d bytes)", i, got, r.Bytes, want, results[0].Bytes)
		}
	}
	for _, d := range want {
		gets := up.Count(http.MethodGet, registrytest.KindManifest, string(d)) + up.Count(http.MethodGet, registrytest.KindBlob, string(d))
		if gets != 1 {
			t.Errorf("upstream GETs of %s = %d, want 1", d.Short(), gets)
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, "v1"); n != 0 {
		t.Errorf("upstream manifest GETs by tag = %d, want 0 (tags are resolved with HEAD)", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindCDN, ""); n != 5 {
		t.Errorf("CDN GETs = %d, want 5 (config and 4 layers, once each)", n)
	}
}

func sortedDigests(ds []oci.Digest) []oci.Digest {
	out := append([]oci.Digest(nil), ds...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func equal(a, b []oci.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
