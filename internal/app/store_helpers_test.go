package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/minio/minio-go/v7"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// storeSecret is the cluster secret of the replicas of the store's tests.
const storeSecret = "the-bucket-replicas-secret-0123456789abcdef"

// storePrefix is the prefix the tests' cacheyds key the bucket under.
const storePrefix = "cacheyd/"

// storeConfig names the test bucket at endpoint with the test server's
// keys, as an operator names versitygw or MinIO (an endpoint,
// path-style).
func storeConfig(endpoint string) s3.Config {
	sc := Defaults().Store
	sc.Bucket, sc.Endpoint, sc.Region, sc.PathStyle = s3test.Bucket, endpoint, s3test.Region, true
	sc.AccessKey, sc.SecretKey = s3test.AccessKey, s3test.SecretKey
	return sc
}

// bucketCacheyd is a test cacheyd in front of up (its CDN allowed) over
// the bucket sc names, with a cache directory of its own.
func bucketCacheyd(t *testing.T, up *registrytest.Registry, sc s3.Config) Config {
	t.Helper()
	cfg := Defaults()
	cfg.Listen, cfg.ShutdownTimeout = "127.0.0.1:0", 10*time.Second
	cfg.Cache.Dir, cfg.Cache.MemoryBytes, cfg.Cache.DiskBytes = t.TempDir(), 16<<20, 1<<30
	cfg.Upstream.RegistryURLs = map[string]string{up.Host(): up.URL()}
	cfg.Upstream.AllowedHosts = []string{up.CDNHost()}
	cfg.Store = sc
	return cfg
}

// member is one running test cacheyd: its base URL and its stop (which
// returns once its uploads had their time to finish).
type member struct {
	base string
	stop func() error
}

// startCacheyd starts cfg; the test's end stops it if the test did not.
func startCacheyd(t *testing.T, cfg Config) member {
	t.Helper()
	base, stop, err := Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("cacheyd did not start: %v", err)
	}
	t.Cleanup(func() { _ = stop() })
	return member{base, stop}
}

// startCluster starts n replicas in front of up, peers of each other only,
// over the bucket sc names, each with an empty cache directory and a new
// port.
func startCluster(t *testing.T, up *registrytest.Registry, sc s3.Config, n int) []member {
	t.Helper()
	lns := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	ms := make([]member, n)
	for i := range ms {
		cfg := bucketCacheyd(t, up, sc)
		cfg.Listener, cfg.Listen = lns[i], addrs[i]
		cfg.Cluster = cluster.Config{Peers: addrs, Advertise: addrs[i], Secret: storeSecret}
		ms[i] = startCacheyd(t, cfg)
	}
	return ms
}

// stopAll stops every member, at once, as a rollout of a whole cluster
// does, and fails t if one stops with an error.
func stopAll(t *testing.T, ms []member) {
	t.Helper()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.stop() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// burst pulls every image of seedApps through each member from clients
// clients at once, all members at the same time, and returns how many
// pulls failed.
func burst(t *testing.T, ms []member, ns string, images, clients int) int {
	t.Helper()
	var mu sync.Mutex // guards failed
	failed := 0
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			n := pullAll(t, m.base, ns, images, clients)
			mu.Lock()
			failed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	return failed
}

// seedApps seeds n images of layers small layers each at up, as
// library/app<i>:v1 (what pullAll pulls), and forgets the seeding's
// requests.
func seedApps(t *testing.T, up *registrytest.Registry, n, layers int) []v1.Image {
	t.Helper()
	imgs := make([]v1.Image, n)
	for i := range imgs {
		imgs[i] = up.SeedImage(t, fmt.Sprintf("library/app%d", i), "v1", layers, 4<<10)
	}
	up.Reset()
	return imgs
}

// contentOf is every digest of imgs a pull fetches by digest: each
// manifest, config and layer.
func contentOf(t *testing.T, imgs ...v1.Image) map[oci.Digest]bool {
	t.Helper()
	all := map[oci.Digest]bool{}
	for _, img := range imgs {
		h, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		all[oci.Digest(h.String())], all[oci.Digest(m.Config.Digest.String())] = true, true
		for _, l := range m.Layers {
			all[oci.Digest(l.Digest.String())] = true
		}
	}
	return all
}

// objectKey is dg's key in the bucket: distribution's layout under the
// prefix.
func objectKey(dg oci.Digest) string {
	return storePrefix + "blobs/" + dg.Algorithm() + "/" + dg.Hex()[:2] + "/" + dg.Hex()
}

// bucketHolds lists the digests whose objects srv's bucket holds, failing
// t for any key out of the layout.
func bucketHolds(t *testing.T, srv *s3test.Server) map[oci.Digest]bool {
	t.Helper()
	held := map[oci.Digest]bool{}
	for obj := range srv.Client.ListObjects(t.Context(), s3test.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list the bucket: %v", obj.Err)
		}
		rest, ok := strings.CutPrefix(obj.Key, storePrefix+"blobs/sha256/")
		two, hex, ok2 := strings.Cut(rest, "/")
		dg, err := oci.ParseDigest("sha256:" + hex)
		if !ok || !ok2 || err != nil || !strings.HasPrefix(hex, two) || objectKey(dg) != obj.Key {
			t.Errorf("the bucket holds %q, out of the layout %sblobs/sha256/<2 hex>/<hex>", obj.Key, storePrefix)
			continue
		}
		held[dg] = true
	}
	return held
}

// readObject reads dg's object from srv's bucket.
func readObject(t *testing.T, srv *s3test.Server, dg oci.Digest) []byte {
	t.Helper()
	obj, err := srv.Client.GetObject(t.Context(), s3test.Bucket, objectKey(dg), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s from the bucket: %v", dg.Short(), err)
	}
	return b
}

// sentToStore counts the requests a cacheyd sends its store, by method and
// path ("GET /bucket/key").
type sentToStore struct {
	next http.RoundTripper
	mu   sync.Mutex // guards n
	n    map[string]int
}

func newSentToStore() *sentToStore {
	return &sentToStore{next: http.DefaultTransport.(*http.Transport).Clone(), n: map[string]int{}}
}

func (s *sentToStore) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.n[req.Method+" "+req.URL.Path]++
	s.mu.Unlock()
	return s.next.RoundTrip(req)
}

// count is how many method requests were sent for dg's object.
func (s *sentToStore) count(method string, dg oci.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[method+" /"+s3test.Bucket+"/"+objectKey(dg)]
}

// any is how many requests of any method were sent for dg's object.
func (s *sentToStore) any(dg oci.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.n {
		if _, path, _ := strings.Cut(k, " "); path == "/"+s3test.Bucket+"/"+objectKey(dg) {
			n += v
		}
	}
	return n
}

// total is how many method requests were sent for any object.
func (s *sentToStore) total(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.n {
		if strings.HasPrefix(k, method+" /"+s3test.Bucket+"/"+storePrefix) {
			n += v
		}
	}
	return n
}

// scrapeWith sums the counters of name that base serves on /metrics whose
// labels include want.
func scrapeWith(t *testing.T, base, name string, want map[string]string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
next:
	for _, m := range mfs[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		total += m.GetCounter().GetValue()
	}
	return int(total)
}

// onlyTagHeads fails t for every request up got that is not a HEAD of a
// tag (or the token flow, or the API's ping).
func onlyTagHeads(t *testing.T, up *registrytest.Registry, when string) {
	t.Helper()
	for _, r := range up.Requests() {
		switch {
		case r.Kind == registrytest.KindToken || r.Kind == registrytest.KindBase:
		case r.Kind == registrytest.KindManifest && r.Method == http.MethodHead && !strings.HasPrefix(r.Ref, "sha256:"):
		default:
			t.Errorf("%s: the registry got %s %s (%s), want HEADs of tags only", when, r.Method, r.Path, r.Host)
		}
	}
}

// deadStore is a loopback address where nothing listens any more.
func deadStore(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// pullWithToken fetches img's tag, manifest, config and layers from repo
// through base, each by clients clients at once, with Authorization
// "Bearer token", as a node pulls a private image; it returns how many
// fetches did not get a 200 and the whole body.
func pullWithToken(t *testing.T, base, ns, repo, tag, token string, img v1.Image, clients int) int {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/v2/" + repo + "/manifests/" + tag, "/v2/" + repo + "/manifests/" + h.String(),
		"/v2/" + repo + "/blobs/" + m.Config.Digest.String()}
	for _, l := range m.Layers {
		paths = append(paths, "/v2/"+repo+"/blobs/"+l.Digest.String())
	}
	var mu sync.Mutex // guards failed
	failed := 0
	var wg sync.WaitGroup
	for range clients {
		for _, path := range paths {
			wg.Go(func() {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path+"?ns="+ns, nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Accept", string(m.MediaType))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
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
