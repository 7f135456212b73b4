package app

import (
	"bytes"
	"crypto/rand"
	"io"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// TestABucketOutlivesItsReplicas: three replicas over one bucket pull a
// few images in a burst; once all three have stopped (each gives its
// queued uploads their time), the bucket holds exactly the images'
// distinct digests, in distribution's layout. Three new replicas (empty
// disks, new ports) pulling the same images in a burst cost the registry
// nothing but the HEADs of the tags: no blob, no CDN fetch, no manifest
// GET; nor does a second cluster (three more replicas, peers of each
// other only) over the same bucket.
func TestABucketOutlivesItsReplicas(t *testing.T) {
	const images, layers, clients, replicas = 3, 2, 4, 3
	srv := s3test.Start(t)
	up := registrytest.New(t, registrytest.Options{Redirect: true})
	want := contentOf(t, seedApps(t, up, images, layers)...)
	sc := storeConfig(srv.Endpoint)
	sent := newSentToStore()
	sc.Transport = sent

	first := startCluster(t, up, sc, replicas)
	if n := burst(t, first, up.Host(), images, clients); n != 0 {
		t.Fatalf("%d pulls of the first burst failed", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != images*(layers+1) {
		t.Errorf("the first burst: the registry got %d blob GETs, want %d (each blob once)", n, images*(layers+1))
	}
	if n := up.Count(http.MethodGet, registrytest.KindCDN, ""); n != images*(layers+1) {
		t.Errorf("the first burst: the CDN got %d fetches, want %d (each blob once)", n, images*(layers+1))
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != images {
		t.Errorf("the first burst: the registry got %d manifest GETs, want %d (each image once)", n, images)
	}
	stopAll(t, first)
	if held := bucketHolds(t, srv); !maps.Equal(held, want) {
		t.Fatalf("the bucket holds %d objects, want exactly the %d distinct digests of the images:\n%v\nwant\n%v", len(held), len(want), held, want)
	}
	// Each object uploaded once, by the replica that fetched it: the
	// others got it from that owner, which keeps it.
	if n := sent.total(http.MethodPut); n != len(want) {
		t.Errorf("the first burst sent %d PUTs to the store, want %d (one per object)", n, len(want))
	}
	if n := sent.total(http.MethodHead); n != len(want) {
		t.Errorf("the first burst sent %d HEADs to the store, want %d (one before each upload)", n, len(want))
	}

	for _, round := range []string{"the replicas restarted", "a second cluster"} {
		up.Reset()
		ms := startCluster(t, up, sc, replicas)
		if n := burst(t, ms, up.Host(), images, clients); n != 0 {
			t.Fatalf("%s: %d pulls failed", round, n)
		}
		if n := up.Count("", registrytest.KindBlob, ""); n != 0 {
			t.Errorf("%s: the registry got %d blob requests, want 0", round, n)
		}
		if n := up.Count("", registrytest.KindCDN, ""); n != 0 {
			t.Errorf("%s: the CDN got %d fetches, want 0", round, n)
		}
		if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != 0 {
			t.Errorf("%s: the registry got %d manifest GETs, want 0", round, n)
		}
		if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n != images {
			t.Errorf("%s: the registry got %d HEADs of tags, want %d (one per image, by its owner)", round, n, images)
		}
		onlyTagHeads(t, up, round)
		stopAll(t, ms)
		if held := bucketHolds(t, srv); !maps.Equal(held, want) {
			t.Errorf("%s: the bucket holds %d objects, want the same %d", round, len(held), len(want))
		}
	}
}

// TestOneBucketReadPerBlob: 16 clients pulling an image at once through a
// cold cacheyd (an empty disk) over a bucket that holds it cause one GET
// of each object from the bucket (the fill's one stream, which every
// client reads), no upload of what was just read from it, and nothing
// from the registry but the tag's HEAD.
func TestOneBucketReadPerBlob(t *testing.T) {
	const layers, clients = 3, 16
	srv := s3test.Start(t)
	up := registrytest.New(t, registrytest.Options{})
	want := contentOf(t, seedApps(t, up, 1, layers)...)
	sc := storeConfig(srv.Endpoint)

	fill := startCacheyd(t, bucketCacheyd(t, up, sc))
	if n := pullAll(t, fill.base, up.Host(), 1, 1); n != 0 {
		t.Fatalf("the pull that fills the bucket failed")
	}
	if err := fill.stop(); err != nil {
		t.Fatal(err)
	}
	if held := bucketHolds(t, srv); !maps.Equal(held, want) {
		t.Fatalf("the bucket holds %v, want %v", held, want)
	}

	up.Reset()
	sent := newSentToStore()
	cfg := bucketCacheyd(t, up, sc)
	cfg.Store.Transport = sent
	cold := startCacheyd(t, cfg)
	if n := pullAll(t, cold.base, up.Host(), 1, clients); n != 0 {
		t.Fatalf("%d pulls failed", n)
	}
	if err := cold.stop(); err != nil {
		t.Fatal(err)
	}
	for dg := range want {
		if n := sent.count(http.MethodGet, dg); n != 1 {
			t.Errorf("%s: %d GETs from the bucket, want 1", dg.Short(), n)
		}
	}
	if n := sent.total(http.MethodGet); n != len(want) {
		t.Errorf("%d GETs from the bucket, want %d (one per object)", n, len(want))
	}
	for _, m := range []string{http.MethodHead, http.MethodPut, http.MethodPost} {
		if n := sent.total(m); n != 0 {
			t.Errorf("%d %s requests to the bucket, want 0 (what was read from it is known to be there)", n, m)
		}
	}
	if n := up.Count("", registrytest.KindBlob, ""); n != 0 {
		t.Errorf("the registry got %d blob requests, want 0", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != 0 {
		t.Errorf("the registry got %d manifest GETs, want 0", n)
	}
	if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); n != 1 {
		t.Errorf("the registry got %d HEADs of the tag, want 1", n)
	}
	onlyTagHeads(t, up, "the cold cacheyd")
}

// TestPrivateContentIsNeverUploaded: an image a client pulls from a
// private repository with its own token, beside a public image pulled
// anonymously, leaves the bucket holding the public image's digests only:
// the store is sent no request at all (no read, no HEAD, no upload) for
// the private image's objects, and one upload for each public one.
func TestPrivateContentIsNeverUploaded(t *testing.T) {
	const clients = 4
	srv := s3test.Start(t)
	up := registrytest.New(t, registrytest.Options{
		Token: true, Users: map[string]string{"alice": "pw"}, Private: map[string][]string{"team/secret": {"alice"}},
	})
	secretImg := up.SeedImage(t, "team/secret", "v1", 2, 4<<10)
	secret := contentOf(t, secretImg)
	public := contentOf(t, seedApps(t, up, 1, 2)...)
	sent := newSentToStore()
	cfg := bucketCacheyd(t, up, storeConfig(srv.Endpoint))
	cfg.Store.Transport = sent
	c := startCacheyd(t, cfg)

	token := userToken(t, up, "alice", "pw", "team/secret")
	var wg sync.WaitGroup
	wg.Go(func() {
		if n := pullWithToken(t, c.base, up.Host(), "team/secret", "v1", token, secretImg, clients); n != 0 {
			t.Errorf("%d fetches of the private image with alice's token failed", n)
		}
	})
	wg.Go(func() {
		if n := pullAll(t, c.base, up.Host(), 1, clients); n != 0 {
			t.Errorf("%d pulls of the public image failed", n)
		}
	})
	wg.Wait()
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if held := bucketHolds(t, srv); !maps.Equal(held, public) {
		t.Errorf("the bucket holds %v, want the public image's %v", held, public)
	}
	for dg := range secret {
		if n := sent.any(dg); n != 0 {
			t.Errorf("private %s: %d requests to the store, want none", dg.Short(), n)
		}
	}
	for dg := range public {
		if n := sent.count(http.MethodPut, dg); n != 1 {
			t.Errorf("public %s: %d uploads, want 1", dg.Short(), n)
		}
	}
}

// TestACorruptObjectInTheBucket: a layer's object in the bucket replaced
// by wrong bytes of the same size is never served whole by a cold
// cacheyd: the fill that read it fails its verification (the clients
// reading it then get a broken body), the bucket is not read for that
// digest again, the registry sends the layer, and the good copy's upload
// overwrites the object.
func TestACorruptObjectInTheBucket(t *testing.T) {
	const clients = 4
	srv := s3test.Start(t)
	up := registrytest.New(t, registrytest.Options{})
	imgs := seedApps(t, up, 1, 2)
	sc := storeConfig(srv.Endpoint)
	fill := startCacheyd(t, bucketCacheyd(t, up, sc))
	if n := pullAll(t, fill.base, up.Host(), 1, 1); n != 0 {
		t.Fatal("the pull that fills the bucket failed")
	}
	if err := fill.stop(); err != nil {
		t.Fatal(err)
	}
	layers, err := imgs[0].Layers()
	if err != nil {
		t.Fatal(err)
	}
	h, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	bad := oci.Digest(h.String())
	good := readObject(t, srv, bad)
	if oci.FromBytes(good) != bad {
		t.Fatalf("the bucket's %s holds the wrong bytes before the test put them there", bad.Short())
	}
	wrong := make([]byte, len(good))
	rand.Read(wrong)
	if _, err := srv.Client.PutObject(t.Context(), s3test.Bucket, objectKey(bad), bytes.NewReader(wrong), int64(len(wrong)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}

	up.Reset()
	sent := newSentToStore()
	cfg := bucketCacheyd(t, up, sc)
	cfg.Store.Transport = sent
	cold := startCacheyd(t, cfg)
	// The first pulls and readers of the layer race the fill that reads the
	// wrong object: those that read it fail (the puller verifies, and a
	// reader of the whole layer gets a broken body), none gets it whole
	// and wrong.
	var wg sync.WaitGroup
	wg.Go(func() { pullAll(t, cold.base, up.Host(), 1, clients) })
	for range clients {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, cold.base+"/v2/library/app0/blobs/"+string(bad)+"?ns="+up.Host(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && !bytes.Equal(got, good) {
				t.Errorf("a reader of %s got %d bytes, whole and wrong", bad.Short(), len(got))
			}
		})
	}
	wg.Wait()
	if n := pullAll(t, cold.base, up.Host(), 1, clients); n != 0 {
		t.Fatalf("%d pulls failed on the next attempt", n)
	}
	if err := cold.stop(); err != nil {
		t.Fatal(err)
	}

	// The registry sends the layer twice: its last byte, which the fill
	// that read the bucket asked of it once that body failed its
	// verification (the route moves past a source whose bytes were wrong;
	// the digest, over the wrong prefix, fails again), and the whole of
	// it to the next fill, which passes the bucket over for that digest.
	if n := up.Count(http.MethodGet, registrytest.KindBlob, string(bad)); n != 2 {
		t.Errorf("the registry got %d GETs of the corrupt layer, want 2", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != 2 {
		t.Errorf("the registry got %d blob GETs, want 2 (the corrupt layer's only)", n)
	}
	if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != 0 {
		t.Errorf("the registry got %d manifest GETs, want 0", n)
	}
	if n := sent.count(http.MethodGet, bad); n != 1 {
		t.Errorf("the bucket was read for the corrupt layer %d times, want once", n)
	}
	if n, all := sent.count(http.MethodPut, bad), sent.total(http.MethodPut); n != 1 || all != 1 {
		t.Errorf("%d uploads of the corrupt layer, %d in all; want the one that overwrites it", n, all)
	}
	if got := readObject(t, srv, bad); oci.FromBytes(got) != bad {
		t.Errorf("the bucket's %s still holds wrong bytes after the stop", bad.Short())
	}
}

// TestABucketThatFailsCostsNothing: with the store down (nothing listens
// on its port), refusing cacheyd's keys (a wrong secret) or never
// answering (a listener that accepts and says nothing, with the store's
// timeout short), every pull completes with the registry's bytes; each
// object asked of the store is one read error of the failure's kind and
// one failure of the store as a source, and of no other kind.
func TestABucketThatFailsCostsNothing(t *testing.T) {
	const images, layers, clients = 2, 2, 4
	kinds := []string{"unreachable", "denied", "timeout"}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{})
			want := contentOf(t, seedApps(t, up, images, layers)...)
			var sc s3.Config
			switch kind {
			case "unreachable":
				sc = storeConfig("http://" + deadStore(t))
			case "denied":
				sc = storeConfig(s3test.Start(t).Endpoint)
				sc.SecretKey = "not-" + s3test.SecretKey
			case "timeout":
				sc = storeConfig("http://" + registrytest.NewSilentListener(t).Addr())
			}
			sc.Timeout = 300 * time.Millisecond
			c := startCacheyd(t, bucketCacheyd(t, up, sc))

			if n := pullAll(t, c.base, up.Host(), images, clients); n != 0 {
				t.Fatalf("%d pulls failed", n)
			}
			if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != images*(layers+1) {
				t.Errorf("the registry got %d blob GETs, want %d (each blob once)", n, images*(layers+1))
			}
			if n := up.Count(http.MethodGet, registrytest.KindManifest, ""); n != images {
				t.Errorf("the registry got %d manifest GETs, want %d", n, images)
			}
			for _, k := range append(kinds, "other") {
				errs := 0
				if k == kind {
					errs = len(want)
				}
				if n := scrapeWith(t, c.base, "cacheyd_s3_read_errors_total", map[string]string{"kind": k}); n != errs {
					t.Errorf("cacheyd_s3_read_errors_total{kind=%q} = %d, want %d (one per object asked of the store)", k, n, errs)
				}
			}
			if n := scrapeWith(t, c.base, "cacheyd_source_failures_total", map[string]string{"source": "store"}); n != len(want) {
				t.Errorf("cacheyd_source_failures_total{source=\"store\"} = %d, want %d (one per object asked)", n, len(want))
			}
			if err := c.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
