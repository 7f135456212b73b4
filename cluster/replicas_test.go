package cluster_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// replica, peer connection and refresh loop must end with its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's clock for the Date header: one per process, by design.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// The idle-worker cleaner of each fasthttp.Server: it notices Stop
		// only after its sleep (up to 10s) ends.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// TestThreeReplicasFetchEachBlobOnce is the cluster's headline: 50 nodes
// pulling a multi-layer, multi-arch image at once, spread over three cold
// replicas, make exactly one upstream GET per blob and per manifest
// digest, one tag HEAD, and every node gets every byte, digest-verified.
func TestThreeReplicasFetchEachBlobOnce(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 4, 256<<10)
	up.Reset()
	reps := startReplicas(t, up, 3, nil)

	const nodes = 50
	results := make([]*puller.Result, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			p := &puller.Puller{Client: &http.Client{}, Base: reps[i%3].base, Namespace: up.Host(), Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}}}
			res, err := p.Pull(t.Context(), "team/app", "v1")
			if err != nil {
				t.Errorf("node %d (replica %d): %v", i, i%3, err)
				return
			}
			results[i] = res
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := slices.Sorted(slices.Values(results[0].Blobs))
	if len(want) != 7 { // index, manifest, config, 4 layers
		t.Fatalf("a pull fetched %d objects, want 7", len(want))
	}
	for i, r := range results {
		if got := slices.Sorted(slices.Values(r.Blobs)); !slices.Equal(got, want) || r.Bytes != results[0].Bytes {
			t.Errorf("node %d fetched %v (%d bytes), node 0 %v (%d bytes)", i, got, r.Bytes, want, results[0].Bytes)
		}
	}
	for _, d := range want {
		gets := up.Count(http.MethodGet, registrytest.KindManifest, string(d)) + up.Count(http.MethodGet, registrytest.KindBlob, string(d))
		if gets != 1 {
			t.Errorf("upstream GETs of %s = %d, want 1 for the cluster", d.Short(), gets)
		}
	}
	if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n != 1 {
		t.Errorf("upstream tag HEADs = %d, want 1 for the cluster", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, "v1"); n != 0 {
		t.Errorf("upstream manifest GETs by tag = %d, want 0", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindCDN, ""); n != 5 {
		t.Errorf("CDN GETs = %d, want 5 (config and 4 layers, once each)", n)
	}
	// Each replica asked the owners of what it did not own, and answered
	// the others for what it owns.
	for i, r := range reps {
		if n := metric(t, r, "cacheyd_cluster_members", nil); n != 3 {
			t.Errorf("replica %d sees %v members, want 3", i, n)
		}
	}
	// The status page lists the members, this replica marked.
	resp, err := http.Get(reps[0].base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, err := readAllResp(resp)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if !strings.Contains(string(page), "<th>"+r.addr+"</th>") {
			t.Errorf("the status page does not list member %s", r.addr)
		}
	}
	if n := strings.Count(string(page), "this replica"); n != 1 {
		t.Errorf("the status page marks %d members as this replica, want 1", n)
	}
	asked, served := 0.0, 0.0
	for _, r := range reps {
		asked += metric(t, r, "cacheyd_cluster_requests_total", map[string]string{"to": "peer"})
		served += metric(t, r, "cacheyd_cluster_served_total", nil)
	}
	if asked == 0 || asked != served {
		t.Errorf("requests to peers %v, served to peers %v: want as many, and some", asked, served)
	}
}

// TestAPeersRequestIsFetchedWhereItArrives: a request with the hop header
// is fetched by the replica it reached, even for a key another owns, and
// even while that replica has a fill of the key in flight from the owner:
// it makes no second hop.
func TestAPeersRequestIsFetchedWhereItArrives(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	data := origintest.RandomBytes(t, 1<<20)
	dg := oci.Digest(up.SeedBlob(t, "team/blob", data).String())
	release := make(chan struct{})
	up.SetHook(registrytest.HoldAfter(up.BlobBytes(string(dg)).First(1), 256<<10, release))
	up.Reset()
	reps := startReplicas(t, up, 2, nil)
	owner, other := reps[0], reps[1]
	if cluster.Rank([]string{reps[0].addr, reps[1].addr}, string(dg))[0] != owner.addr {
		owner, other = other, owner
	}
	u := other.base + "/v2/team/blob/blobs/" + string(dg) + "?ns=" + up.Host()
	// A client of the other replica: its fill streams from the owner,
	// whose upstream fetch is held after 256 KiB.
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Wait(t.Context(), up.BlobBytes(string(dg)), 1); err != nil {
		t.Fatal(err)
	}
	// A peer's request for the same digest, to the other replica.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	asPeer(t, req, clusterSecret)
	hop, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	for _, r := range []*http.Response{resp, hop} {
		got, err := readAllResp(r)
		if err != nil || string(got) != string(data) {
			t.Fatalf("got %d bytes, err %v; want the %d bytes", len(got), err, len(data))
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, string(dg)); n != 2 {
		t.Errorf("upstream GETs = %d, want 2: the owner's, and the other's for the peer's request", n)
	}
	if n := metric(t, owner, "cacheyd_cluster_served_total", nil); n != 1 {
		t.Errorf("the owner served %v requests for peers, want 1 (the client's miss, not the peer's request)", n)
	}
	if n := metric(t, other, "cacheyd_cluster_direct_total", map[string]string{"reason": "peer"}); n != 1 {
		t.Errorf("the other fetched %v peer requests itself, want 1", n)
	}
}
