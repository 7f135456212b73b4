package cluster_test

import (
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// TestReplicaConforms: a replica's origin asking the owner of every key (a
// cacheyd in front of a registry) answers as every origin does.
func TestReplicaConforms(t *testing.T) {
	origintest.Conformance(t, origintest.Suite{New: conformingReplica})
}

// conformingReplica is the cluster origin of a replica whose every key of
// h is owned by the other member, a cacheyd in front of a registry holding
// h; the replica's own upstream is unreachable, so that only the owner
// answers. The registry refuses cacheyd a private repository; a cut or a
// hang is the registry's, which the owner passes on: it makes no retries.
func conformingReplica(t *testing.T, h origintest.Holding) origintest.Fetcher {
	opts := registrytest.Options{}
	if h.Behaviour == origintest.Refuses {
		// It refuses before it looks: it need hold nothing.
		opts = registrytest.Options{Token: true, Private: map[string][]string{h.Repository: {"someone"}}}
	}
	up := registrytest.New(t, opts)
	if h.Behaviour != origintest.Refuses {
		for _, b := range h.Blobs {
			up.SeedBlob(t, h.Repository, b)
		}
		up.SeedManifest(t, h.Repository, h.Tag, h.Manifest, h.MediaType)
	}
	switch h.Behaviour {
	case origintest.Cuts:
		up.SetHook(registrytest.Truncate(up.BlobBytes(""), h.After))
	case origintest.Hangs:
		// Released when the registry closes, at the test's end.
		up.SetHook(registrytest.HoldAfter(up.BlobBytes(""), h.After, make(chan struct{})))
	}

	ln, owner, self := ownerAndSelf(t, h)
	cfg := replicaConfig(t, up)
	cfg.Upstream.RegistryURLs = map[string]string{h.Registry: up.URL()}
	cfg.Cache.FillRetries = -1
	cfg.Listener, cfg.Listen = ln, owner
	cfg.Cluster = cluster.Config{Peers: []string{owner, self}, Advertise: owner, Secret: clusterSecret}
	startReplica(t, cfg)

	o, err := cluster.New(cluster.Config{Peers: []string{owner, self}, Advertise: self, Secret: clusterSecret,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return sources.New(sources.Set{Owner: o.Owner(), Parent: o.Parent(), Registry: origintest.Unavailable,
		Logger: slog.New(slog.DiscardHandler)})
}

// ownerAndSelf returns the owner's listener and address, and an address
// for the replica under test (nothing listens there: it is never asked),
// such that the owner ranks first for every key the suite asks for: the
// digests and the tags. An owner whose weight for some key is low leaves
// few addresses below it; another owner is tried.
func ownerAndSelf(t *testing.T, h origintest.Holding) (ln net.Listener, owner, self string) {
	t.Helper()
	keys := []string{string(oci.FromBytes(h.Manifest)), string(oci.FromBytes(h.Absent)),
		h.Registry + "/" + h.Repository + ":" + h.Tag, h.Registry + "/" + h.Repository + ":" + h.AbsentTag}
	for _, b := range h.Blobs {
		keys = append(keys, string(oci.FromBytes(b)))
	}
	for range 20 {
		ln = listen(t)
		owner = ln.Addr().String()
	next:
		for port := 1; port < 1<<14; port++ {
			self = fmt.Sprintf("127.0.0.2:%d", port)
			for _, k := range keys {
				if cluster.Rank([]string{owner, self}, k)[0] != owner {
					continue next
				}
			}
			return ln, owner, self
		}
		ln.Close()
	}
	t.Fatal("no address ranks below any of 20 owners for every key")
	return nil, "", ""
}
