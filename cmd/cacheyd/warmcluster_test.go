package main

import (
	"bytes"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestWarmOneReplicaWarmsTheCluster: replicas that share their fills
// (--peers) each fetch a digest through its one owner, which keeps it; so a
// warm through any one replica leaves every object with its owner, and
// nodes pulling through every other replica afterwards send no GET
// upstream.
func TestWarmOneReplicaWarmsTheCluster(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true})
	up.SeedIndex(t, "team/app", "v1", []string{"linux/amd64", "linux/arm64"}, 3, 64<<10)
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	bases := make([]string, len(addrs))
	for i, addr := range addrs {
		flags := secureFlags(t, map[string]string{up.Host(): up.URL()})
		flags.Listen, flags.Advertise, flags.Peers, flags.ClusterSecret = addr, addr, addrs, testClusterSecret
		bases[i] = mustServe(t, flags)
	}
	up.Reset()

	var out bytes.Buffer
	if _, err := warmArgs(t, "--target", bases[0], up.Host()+"/team/app:v1").run(t.Context(), nil, &out, nil); err != nil {
		t.Fatalf("warm through one replica: %v\n%s", err, out.String())
	}
	warmed := up.Count(http.MethodGet, registrytest.KindBlob, "") + up.Count(http.MethodGet, registrytest.KindCDN, "")

	up.Reset()
	for _, base := range bases[1:] {
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			plat, err := puller.ParsePlatform(p)
			if err != nil {
				t.Fatal(err)
			}
			node := &puller.Puller{Base: base, Namespace: up.Host(), Platforms: []v1.Platform{plat}}
			if _, err := node.Pull(t.Context(), "team/app", "v1"); err != nil {
				t.Fatalf("%s node through %s: %v", p, base, err)
			}
		}
	}
	if warmed != 8 {
		t.Errorf("the warm fetched %d blobs upstream, want each of the 8 once", warmed)
	}
	if n := up.Count(http.MethodGet, "", ""); n != up.Count(http.MethodGet, registrytest.KindToken, "") {
		t.Errorf("upstream GETs after the warm = %d, want none but tokens: %+v", n, up.Requests())
	}
}
