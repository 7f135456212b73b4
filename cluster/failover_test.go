package cluster_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestTheOwnerDiesMidFill: the owner of a 64 MiB blob stops while every
// replica streams it from the owner's fill. The other replicas resume into
// the same fills from the next replica by rank, nodes of the dead owner
// resume elsewhere as containerd would, every node gets verified bytes,
// and upstream sees at most one more fetch.
func TestTheOwnerDiesMidFill(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Redirect: true})
	data := origintest.RandomBytes(t, 64<<20)
	dg := oci.Digest(up.SeedBlob(t, "team/big", data).String())
	release := make(chan struct{})
	// The owner's upstream fetch stops after 16 MiB: every replica is in
	// the middle of the blob when the owner goes.
	up.SetHook(registrytest.HoldAfter(up.BlobBytes(string(dg)).First(1), 16<<20, release))
	up.Reset()
	owner := -1
	reps := startReplicas(t, up, 3, func(i int, cfg *app.Config) {
		// One stream per fill, so that a fetch is one request to count.
		cfg.Cache.FillParallel = 1
		if cluster.Rank(cfg.Cluster.Peers, string(dg))[0] == cfg.Cluster.Advertise {
			owner = i
			cfg.ShutdownTimeout = time.Millisecond // it dies: nothing in flight may finish
		}
	})

	const perReplica = 3
	started := make(chan struct{}, len(reps)*perReplica)
	errs := make(chan error, len(reps)*perReplica)
	var wg sync.WaitGroup
	for i := range reps {
		// A node asks its own replica, and resumes on the others in turn.
		bases := []string{reps[i].base, reps[(i+1)%3].base, reps[(i+2)%3].base}
		for range perReplica {
			wg.Go(func() { errs <- getBlob(t.Context(), bases, up.Host(), "team/big", data, started) })
		}
	}
	wait, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for range cap(started) {
		select {
		case <-started:
		case <-wait.Done():
			t.Fatal("nodes did not all start receiving the blob")
		}
	}
	_ = reps[owner].stop() // its deadline passes: responses in flight are cut
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindCDN, string(dg)); n < 1 || n > 2 {
		t.Errorf("upstream sent the blob %d times, want the dead owner's and at most one more", n)
	} else {
		t.Logf("upstream sent the blob %d times", n)
	}
	for i, r := range reps {
		if i == owner {
			continue
		}
		if n := metric(t, r, "cacheyd_cluster_requests_total", map[string]string{"outcome": "broken"}); n < 1 {
			t.Errorf("replica %d saw %v broken peer bodies, want the owner's", i, n)
		}
	}
}
