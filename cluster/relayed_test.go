package cluster_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// guardMimic answers every request for the blobs of m with a 401 whose
// challenge is cacheyd's own guard's: a registry that lies, or happens to
// look like cacheyd.
func guardMimic(m registrytest.Match) registrytest.Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !m(registrytest.Recorded(req)) {
			return false
		}
		w.Header().Set("WWW-Authenticate", oci.TokenHeader+` realm="cacheyd"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

// TestUpstreamFailuresRelayedByTheOwnerAreNotItsOwn: a registry that
// fails a blob (503, or a 401 whose challenge mimics cacheyd's guard) fails
// it through a non-owner exactly as through one replica alone: the owner's
// answer, marked relayed, reaches the client; the non-owner neither
// retries it, nor fetches it itself, nor skips the healthy owner, nor warns
// that the owner refused its token. Upstream sees as many requests as for
// one replica.
func TestUpstreamFailuresRelayedByTheOwnerAreNotItsOwn(t *testing.T) {
	for _, tt := range []struct {
		name      string
		hook      func(m registrytest.Match) registrytest.Hook
		status    int
		upstreams int // GETs of the blob by one replica alone: FillRetries+1 for a 503, 0 to take what one replica does
	}{
		{"503", func(m registrytest.Match) registrytest.Hook {
			return registrytest.Fail(m, http.StatusServiceUnavailable, 0)
		}, 503, 5},
		{"a 401 that mimics the guard", guardMimic, 401, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fast := func(cfg *app.Config) { cfg.Cache.RetryBackoff = time.Millisecond }
			pull := func(base string, up *registrytest.Registry, dg string) *http.Response {
				resp, err := http.Get(base + "/v2/team/app/blobs/" + dg + "?ns=" + up.Host())
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}

			// One replica alone, for the count.
			alone := registrytest.New(t, registrytest.Options{})
			dg := alone.SeedBlob(t, "team/app", []byte("a layer upstream fails")).String()
			alone.SetHook(tt.hook(registrytest.On(http.MethodGet, registrytest.KindBlob, dg)))
			alone.Reset()
			cfg := replicaConfig(t, alone)
			fast(&cfg)
			if resp := pull(startReplica(t, cfg).base, alone, dg); resp.StatusCode != tt.status {
				t.Fatalf("one replica: %d, want %d", resp.StatusCode, tt.status)
			}
			want := alone.Count(http.MethodGet, registrytest.KindBlob, dg)
			if tt.upstreams != 0 && want != tt.upstreams {
				t.Fatalf("one replica asked upstream %d times, want %d", want, tt.upstreams)
			}

			// Through a non-owner.
			up := registrytest.New(t, registrytest.Options{})
			up.SeedBlob(t, "team/app", []byte("a layer upstream fails"))
			up.SetHook(tt.hook(registrytest.On(http.MethodGet, registrytest.KindBlob, dg)))
			up.Reset()
			reps := startReplicas(t, up, 2, func(_ int, cfg *app.Config) { fast(cfg) })
			owner, other := reps[0], reps[1]
			if cluster.Rank([]string{owner.addr, other.addr}, dg)[0] != owner.addr {
				owner, other = other, owner
			}
			resp := pull(other.base, up, dg)
			if resp.StatusCode != tt.status {
				t.Errorf("through a non-owner: %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") != oci.TokenHeader+` realm="cacheyd"` {
				t.Errorf("the registry's challenge did not reach the client: %q", resp.Header.Get("WWW-Authenticate"))
			}
			if n := up.Count(http.MethodGet, registrytest.KindBlob, dg); n != want {
				t.Errorf("through a non-owner upstream was asked %d times, want %d as for one replica", n, want)
			}
			if n := metric(t, other, "cacheyd_cluster_member_skipped", map[string]string{"member": owner.addr}); n != 0 {
				t.Errorf("the non-owner skips the healthy owner (gauge %v)", n)
			}
			if n := metric(t, other, "cacheyd_cluster_requests_total", map[string]string{"to": "peer", "outcome": "relayed"}); n != 1 {
				t.Errorf("relayed answers counted %v, want 1", n)
			}
			if n := metric(t, other, "cacheyd_cluster_direct_total", nil); n != 0 {
				t.Errorf("the non-owner fetched %v times itself, want never", n)
			}
			if n := other.logs.count("refused the client token"); n != 0 {
				t.Errorf("the non-owner warned %d times that the owner refused its token", n)
			}
		})
	}
}

// TestATruncatingUpstreamCostsOneLadderOfRetries: a registry that cuts
// every answer for a blob after a few bytes gets, through a non-owner,
// the attempts one replica alone makes (or one more), not a ladder of
// retries per hop: the non-owner resumes its cut body by asking the owner
// again, which answers with its fill's failure marked relayed, and the
// non-owner ends there.
func TestATruncatingUpstreamCostsOneLadderOfRetries(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	fast := func(cfg *app.Config) {
		cfg.Cache.RetryBackoff = time.Millisecond
		cfg.Cache.FillParallel = 1 // one stream per fill, so that an attempt is one request
	}
	get := func(base string, up *registrytest.Registry, dg string) int {
		resp, err := http.Get(base + "/v2/team/app/blobs/" + dg + "?ns=" + up.Host())
		if err != nil {
			return 0 // a body cut after its headers: the client's error
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	alone := registrytest.New(t, registrytest.Options{})
	dg := alone.SeedBlob(t, "team/app", data).String()
	alone.SetHook(registrytest.Truncate(alone.BlobBytes(dg), 1000))
	alone.Reset()
	cfg := replicaConfig(t, alone)
	fast(&cfg)
	get(startReplica(t, cfg).base, alone, dg)
	want := alone.Count(http.MethodGet, registrytest.KindBlob, dg)
	if want != 5 {
		t.Fatalf("one replica asked upstream %d times, want FillRetries+1 = 5", want)
	}

	up := registrytest.New(t, registrytest.Options{})
	up.SeedBlob(t, "team/app", data)
	up.SetHook(registrytest.Truncate(up.BlobBytes(dg), 1000))
	up.Reset()
	reps := startReplicas(t, up, 2, func(_ int, cfg *app.Config) { fast(cfg) })
	owner, other := reps[0], reps[1]
	if cluster.Rank([]string{owner.addr, other.addr}, dg)[0] != owner.addr {
		owner, other = other, owner
	}
	get(other.base, up, dg)
	if n := up.Count(http.MethodGet, registrytest.KindBlob, dg); n < want || n > want+1 {
		t.Errorf("through a non-owner upstream was asked %d times, want %d as for one replica (or one more)", n, want)
	}
	if n := metric(t, other, "cacheyd_cluster_member_skipped", map[string]string{"member": owner.addr}); n != 0 {
		t.Errorf("the non-owner skips the owner (gauge %v) for its upstream's cuts", n)
	}
	if n := metric(t, other, "cacheyd_cluster_direct_total", nil); n != 0 {
		t.Errorf("the non-owner fetched %v times itself, want never", n)
	}
}
