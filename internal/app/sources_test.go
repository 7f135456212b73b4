package app

import (
	"bytes"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
	"github.com/cacheyd/cacheyd/tier/s3"
	"github.com/cacheyd/cacheyd/upstream"
)

// countingPlanner counts the plans of the planner it wraps.
type countingPlanner struct {
	sources.Planner
	mu    sync.Mutex // guards plans
	plans int
}

func (c *countingPlanner) Plan(req *oci.Request, keyed bool) (string, []sources.Fetcher) {
	c.mu.Lock()
	c.plans++
	c.mu.Unlock()
	return c.Planner.Plan(req, keyed)
}

// TestAFillThroughAClusterRanksOnce: replica A misses on a blob of 16
// chunks that replica B owns. A's fill ranks the members once, when it is
// keyed, and every one of its requests (the first, each chunk, any rescue
// of a stranded reader) goes to B through that route: B answers them all,
// and A never asks the registry.
func TestAFillThroughAClusterRanksOnce(t *testing.T) {
	const secret = "the-replicas-secret-0123456789abcdefghij"
	const chunk = 256 << 10
	up := registrytest.New(t, registrytest.Options{})
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrA := lnA.Addr().String()
	lnA.Close() // A serves nothing: B finds it unreachable, and asks it nothing
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrB := lnB.Addr().String()
	peers := []string{addrA, addrB}
	// A blob whose owner is B.
	data := make([]byte, 16*chunk)
	for {
		rand.Read(data)
		if cluster.Rank(peers, string(oci.FromBytes(data)))[0] == addrB {
			break
		}
	}
	dg := oci.Digest(up.SeedBlob(t, "team/big", data).String())
	up.Reset()
	upCfg := upstream.Config{RegistryURLs: map[string]string{up.Host(): up.URL()}, AllowedHosts: []string{up.CDNHost()}}
	log := slog.New(slog.DiscardHandler)

	cfgB := Defaults()
	cfgB.ShutdownTimeout = 5 * time.Second
	cfgB.Cache.Dir, cfgB.Cache.MemoryBytes, cfgB.Cache.DiskBytes = t.TempDir(), 16<<20, 1<<30
	cfgB.Upstream.RegistryURLs, cfgB.Upstream.AllowedHosts = upCfg.RegistryURLs, upCfg.AllowedHosts
	cfgB.Listener, cfgB.Listen = lnB, addrB
	cfgB.Cluster = cluster.Config{Peers: peers, Advertise: addrB, Secret: secret}
	baseB, stopB, err := Start(t.Context(), cfgB, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopB() })

	// A, wired as Run wires it, with its owner's plans counted.
	m := metrics.New(nil)
	upCfg.Metrics, upCfg.Logger = m, log
	client, err := upstream.New(upCfg)
	if err != nil {
		t.Fatal(err)
	}
	co, err := cluster.New(cluster.Config{Peers: peers, Advertise: addrA, Secret: secret, Metrics: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(co.Close)
	owner := &countingPlanner{Planner: co.Owner()}
	pol := sources.New(sources.Set{Owner: owner, Registry: client, Metrics: m, Logger: log})
	cc := cache.Config{Dir: t.TempDir(), FillChunk: chunk, FillParallel: 4, Metrics: m, Logger: log}
	tiers, _, closeTiers, err := openTiers(cc, nil, s3.Config{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeTiers() })
	c, err := cache.New(cc, routes{pol}, tiers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	obj, err := c.Get(t.Context(), &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: up.Host(),
		Repository: "team/big", Reference: oci.Reference{Digest: dg}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := obj.Body(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v; want the %d bytes", len(got), err, len(data))
	}

	owner.mu.Lock()
	plans := owner.plans
	owner.mu.Unlock()
	if plans != 1 {
		t.Errorf("A ranked the members %d times for one fill, want once", plans)
	}
	rescues := int(testutil.ToFloat64(m.FillRescues))
	if served, want := scrape(t, baseB, "cacheyd_cluster_served_total"), 16+rescues; served != want {
		t.Errorf("B answered A %d requests, want %d (16 chunks, %d rescues)", served, want, rescues)
	}
	if n := testutil.CollectAndCount(m.ClusterDirect) + testutil.CollectAndCount(m.SourceFailures); n != 0 {
		t.Errorf("A fetched from the registry, or counted a failure (%d series), want neither", n)
	}
}

// scrape sums the series of name that base serves on /metrics.
func scrape(t *testing.T, base, name string) int {
	t.Helper()
	return scrapeWith(t, base, name, nil)
}
