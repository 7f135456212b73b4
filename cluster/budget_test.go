package cluster_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// manifestOwnedBy seeds, under repo, a manifest whose owner among addrs
// satisfies owned (its members by rank), and returns its digest.
func manifestOwnedBy(t *testing.T, up *registrytest.Registry, addrs []string, owned func(rank []string) bool) string {
	t.Helper()
	for i := range 200 {
		body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",`+
			`"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"annotations":{"n":"%d"}}`, ociManifest, i))
		dg := string(oci.FromBytes(body))
		if owned(cluster.Rank(addrs, dg)) {
			up.SeedManifest(t, "team/app", fmt.Sprintf("m%d", i), body, ociManifest)
			return dg
		}
	}
	t.Fatal("no manifest of 200 is owned as asked")
	return ""
}

// getManifest GETs the manifest dg from the replica at base, as a node.
func getManifest(t *testing.T, base, ns, dg string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v2/team/app/manifests/"+dg+"?ns="+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", ociManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := readAllResp(resp)
	if err != nil || string(oci.FromBytes(body)) != dg {
		t.Fatalf("GET manifest %s from %s: %v, %d bytes", dg, base, err, len(body))
	}
}

// budgetRow is the row of registry in the pull budgets of r's status page,
// from its remaining count to its seen-by cell; "" when it has none.
func budgetRow(t *testing.T, r *replica, registry string) string {
	t.Helper()
	resp, err := http.Get(r.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, err := readAllResp(resp)
	if err != nil {
		t.Fatal(err)
	}
	_, row, ok := strings.Cut(string(page), "<tr><th>"+registry+"</th>")
	if !ok {
		return ""
	}
	row, _, _ = strings.Cut(row, "</tr>")
	return row
}

// checkBudget checks r's status row for registry: remaining of 10 pulls,
// seen by by.
func checkBudget(t *testing.T, who string, r *replica, registry string, remaining int, by string) {
	t.Helper()
	row := budgetRow(t, r, registry)
	want := fmt.Sprintf(`<td class="n">%d (%d.0%%)</td><td class="n">10</td><td class="n">6h0m0s</td>`, remaining, remaining*10)
	if !strings.HasPrefix(row, want) || !strings.HasSuffix(row, "<td>"+by+"</td>") {
		t.Errorf("%s's pull budget of %s: %q; want %d left, seen by %s", who, registry, row, remaining, by)
	}
}

// TestEveryReplicaShowsTheBudgetItLastSaw: the owner of a manifest spends
// the registry's budget for it and states what the registry said on its
// answer; the replica that asked shows it, seen by the owner, and then the
// newer one another owner states; each owner shows its own reading, seen
// by itself; the metrics stay each replica's own reading.
func TestEveryReplicaShowsTheBudgetItLastSaw(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{PullLimit: 10})
	reps := startReplicas(t, up, 3, nil)
	addrs := []string{reps[0].addr, reps[1].addr, reps[2].addr}
	// Replica 0 asks for two manifests: one replica 1 owns, then one
	// replica 2 owns.
	first := manifestOwnedBy(t, up, addrs, func(rank []string) bool { return rank[0] == addrs[1] })
	second := manifestOwnedBy(t, up, addrs, func(rank []string) bool { return rank[0] == addrs[2] })
	up.Reset()
	ns := up.Host()

	getManifest(t, reps[0].base, ns, first)
	if counted, refused := up.Pulls(); counted != 1 || refused != 0 {
		t.Fatalf("registry counted %d pulls, refused %d; want 1, 0", counted, refused)
	}
	checkBudget(t, "the replica that asked", reps[0], ns, 9, reps[1].addr)
	checkBudget(t, "the owner", reps[1], ns, 9, "this replica")
	if row := budgetRow(t, reps[2], ns); row != "" {
		t.Errorf("a replica that neither asked nor fetched shows a budget: %q", row)
	}

	getManifest(t, reps[0].base, ns, second)
	if counted, _ := up.Pulls(); counted != 2 {
		t.Fatalf("registry counted %d pulls, want 2", counted)
	}
	checkBudget(t, "the replica that asked", reps[0], ns, 8, reps[2].addr)
	checkBudget(t, "the first owner", reps[1], ns, 9, "this replica")
	checkBudget(t, "the second owner", reps[2], ns, 8, "this replica")

	const gauge = "cacheyd_upstream_ratelimit_remaining"
	for i, want := range []float64{0, 9, 8} {
		if got := metric(t, reps[i], gauge, nil); got != want {
			t.Errorf("replica %d's %s = %v, want %v: its own reading only", i, gauge, got, want)
		}
	}
}

// budgetFront is a member that holds the secret and stands in front of a
// real replica, passing on its answers with its pull budget header or its
// answer proof tampered with, as its mode says.
type budgetFront struct {
	addr string

	mu       sync.Mutex // guards asked, tampered
	asked    int        // /v2 requests
	tampered int        // answers with a budget it changed or an answer proof it removed
}

func newBudgetFront(t *testing.T, backend, mode string) *budgetFront {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	other, err := peerauth.New("another-cluster-secret-0123456789abcdefghij")
	if err != nil {
		t.Fatal(err)
	}
	f := &budgetFront{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		h := resp.Header.Get(peerauth.BudgetHeader)
		if !strings.HasPrefix(resp.Request.URL.Path, "/v2/") || h == "" {
			return nil
		}
		switch mode {
		case "another secret":
			h = other.SignBudget(peerauth.NewProof(time.Now()), peerauth.Budget{Limit: 10, Remaining: 1, Window: 6 * time.Hour, Seen: time.Now()})
		case "changed":
			h = strings.Replace(h, ";remaining=9;", ";remaining=1;", 1)
		case "malformed":
			h = "limit=lots;remaining=1"
		case "answer unproven":
			resp.Header.Del(peerauth.AnswerHeader)
		}
		if h != resp.Header.Get(peerauth.BudgetHeader) || mode == "answer unproven" {
			f.mu.Lock()
			f.tampered++
			f.mu.Unlock()
		}
		resp.Header.Set(peerauth.BudgetHeader, h)
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/") {
			f.mu.Lock()
			f.asked++
			f.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.addr = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func (f *budgetFront) counts() (asked, tampered int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked, f.tampered
}

// TestABudgetIsBelievedOnlyProven: a pull budget a member's answer states
// is believed only when it is proven for the request with the cluster
// secret, on an answer proven too. One proven with another secret,
// changed on the way, or unreadable is ignored while the content, proven,
// is taken; with the answer's own proof gone the member is skipped
// whatever its budget says. The replica that asked shows nothing it heard:
// none, or its own reading once it fetched itself.
func TestABudgetIsBelievedOnlyProven(t *testing.T) {
	for _, tt := range []struct {
		mode    string
		outcome string // of the request to the member
		own     bool   // the replica that asked fetched itself
	}{
		{"another secret", "fetched", false},
		{"changed", "fetched", false},
		{"malformed", "fetched", false},
		{"answer unproven", "unauthenticated", true},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{PullLimit: 10})
			lns := []net.Listener{listen(t), listen(t), listen(t)}
			f := newBudgetFront(t, "http://"+lns[1].Addr().String(), tt.mode)
			addrs := []string{lns[0].Addr().String(), f.addr, lns[2].Addr().String()}
			// The front owns it, and replica 0 ranks itself next: it
			// fetches itself when the front fails.
			dg := manifestOwnedBy(t, up, addrs, func(rank []string) bool { return rank[0] == f.addr && rank[1] == addrs[0] })
			up.Reset()
			reps := make([]*replica, 3)
			for i := range reps {
				cfg := replicaConfig(t, up)
				cfg.Listener, cfg.Listen = lns[i], lns[i].Addr().String()
				cfg.Cluster = cluster.Config{Peers: addrs, Advertise: addrs[i], Secret: clusterSecret}
				reps[i] = startReplica(t, cfg)
			}
			ns := up.Host()
			getManifest(t, reps[0].base, ns, dg)
			if asked, tampered := f.counts(); asked != 1 || tampered != 1 {
				t.Fatalf("the front was asked %d times and tampered with %d answers; want 1 and 1", asked, tampered)
			}
			if n := metric(t, reps[0], "cacheyd_cluster_requests_total", map[string]string{"to": "peer", "outcome": tt.outcome}); n != 1 {
				t.Errorf("outcome %s counted %v times, want 1", tt.outcome, n)
			}
			checkBudget(t, "the replica behind the front", reps[1], ns, 9, "this replica")
			if !tt.own {
				if row := budgetRow(t, reps[0], ns); row != "" {
					t.Errorf("the replica that asked believed a budget: %q", row)
				}
				return
			}
			checkBudget(t, "the replica that asked", reps[0], ns, 8, "this replica")
		})
	}
}
