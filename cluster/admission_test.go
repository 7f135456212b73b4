package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// stranger is a member of the list that does not prove the cluster secret,
// or only passes its probes: it records every request it gets, with its
// headers, and lies under /v2.
type stranger struct {
	srv  *httptest.Server
	addr string

	mu   sync.Mutex // guards reqs
	reqs []*http.Request
}

// newStranger starts a stranger. secret is what it proves its probes
// with: "" for none, another cluster's, or "proxy" to pass them to backend
// (a real replica), as anyone on the path of plain HTTP could. It answers a
// HEAD under /v2 with 200 and lie as the digest, unproven; a GET is passed
// to backend when it has one, else answered the same way.
func newStranger(t *testing.T, secret, backend string, lie oci.Digest) *stranger {
	t.Helper()
	s := &stranger{}
	var proxy *httputil.ReverseProxy
	if backend != "" {
		u, err := url.Parse(backend)
		if err != nil {
			t.Fatal(err)
		}
		proxy = httputil.NewSingleHostReverseProxy(u)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Clone(context.Background()))
		s.mu.Unlock()
		switch {
		case r.URL.Path == peerauth.ProbePath && secret == "proxy":
			proxy.ServeHTTP(w, r)
		case r.URL.Path == peerauth.ProbePath:
			if secret != "" {
				// A proof, with the wrong secret.
				k, err := peerauth.New(secret)
				if err != nil {
					panic(err)
				}
				w.Header().Set(peerauth.AnswerHeader, k.SignAnswer(peerauth.NewProof(time.Now()), peerauth.Answer{Status: 200, ContentLength: "0"}))
			}
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodGet && proxy != nil:
			proxy.ServeHTTP(w, r)
		default:
			w.Header().Set("Docker-Content-Digest", string(lie))
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set(oci.SourceHeader, "tags")
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.srv.Close)
	s.addr = strings.TrimPrefix(s.srv.URL, "http://")
	return s
}

// requests returns what it got: "METHOD path", probes included.
func (s *stranger) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// strangerCluster starts two replicas and a stranger that owns key (its
// address chosen until it does), all three in every list.
func strangerCluster(t *testing.T, up *registrytest.Registry, newS func(backend string) *stranger, keys ...func(members []string) bool) ([]*replica, *stranger) {
	t.Helper()
	for range 100 {
		lns := []net.Listener{listen(t), listen(t)}
		s := newS("http://" + lns[1].Addr().String())
		addrs := []string{lns[0].Addr().String(), lns[1].Addr().String(), s.addr}
		owns := true
		for _, k := range keys {
			owns = owns && k(addrs)
		}
		if !owns {
			lns[0].Close()
			lns[1].Close()
			s.srv.Close()
			continue
		}
		reps := make([]*replica, 2)
		for i := range reps {
			cfg := replicaConfig(t, up)
			cfg.Listener, cfg.Listen = lns[i], lns[i].Addr().String()
			cfg.Cluster = cluster.Config{Peers: addrs, Advertise: addrs[i], Secret: clusterSecret}
			reps[i] = startReplica(t, cfg)
		}
		return reps, s
	}
	t.Fatal("no stranger address of 100 owns the keys")
	return nil, nil
}

// ownedBy returns a test of members: key's owner is the last of them (the
// stranger's place).
func ownedBy(key string) func([]string) bool {
	return func(members []string) bool { return cluster.Rank(members, key)[0] == members[len(members)-1] }
}

// TestMembersWithoutTheSecretAreNeverAsked: a member that cannot prove the
// cluster secret (it proves none, or another cluster's) is never ranked:
// it receives probes and nothing else, above all no request with a client's
// Authorization, and a pull through the cluster is served as without it.
func TestMembersWithoutTheSecretAreNeverAsked(t *testing.T) {
	for _, tt := range []struct{ name, secret string }{{"no proof", ""}, {"another secret", "another-cluster-secret-0123456789abcdef"}} {
		secret := tt.secret
		t.Run(tt.name, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{})
			up.SeedImage(t, "team/app", "v1", 2, 64<<10)
			up.Reset()
			lie := oci.FromBytes([]byte("a manifest the stranger would have clients pull"))
			reps, s := strangerCluster(t, up, func(string) *stranger { return newStranger(t, secret, "", lie) },
				ownedBy(up.Host()+"/team/app:v1"))
			p := &puller.Puller{Client: &http.Client{}, Base: reps[0].base, Namespace: up.Host()}
			res, err := p.Pull(t.Context(), "team/app", "v1")
			if err != nil || len(res.Blobs) != 4 {
				t.Fatalf("pull: %v, %d objects; want 4", err, len(res.Blobs))
			}
			for _, r := range s.requests() {
				if r.URL.Path != peerauth.ProbePath {
					t.Errorf("the stranger was asked %s %s", r.Method, r.URL.Path)
				}
			}
			if n := metric(t, reps[0], "cacheyd_cluster_member_skipped", map[string]string{"member": s.addr}); n != 1 {
				t.Errorf("the stranger's skip gauge is %v, want 1: never admitted", n)
			}
		})
	}
}

// TestUnprovenAnswersAreNotBelieved: a member that passes its probes (it
// relays them to a real replica, as anyone on the path of plain HTTP
// could) but answers without proof is not believed: its tag answer
// pointing at another manifest, and its 200 to the private-content check
// of alice's private layer for an anonymous client, are taken for what
// they are, the member is skipped and the next source asked. It never
// sees a client's credentials, only the sealed form it cannot open.
func TestUnprovenAnswersAreNotBelieved(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{
		Token: true, Users: map[string]string{"alice": "pw"}, Private: map[string][]string{"team/secret": {"alice"}},
	})
	img := up.SeedImage(t, "team/app", "v1", 1, 1000)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	private := []byte("alice's private layer")
	secretDg := up.SeedBlob(t, "team/secret", private).String()
	up.Reset()
	lie := oci.FromBytes([]byte("a manifest the stranger would have clients pull"))

	t.Run("a tag", func(t *testing.T) {
		reps, s := strangerCluster(t, up, func(backend string) *stranger { return newStranger(t, "proxy", backend, lie) },
			ownedBy(up.Host()+"/team/app:v1"))
		tok := token(t, up, "team/app", "", "")
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, reps[0].base+"/v2/team/app/manifests/v1?ns="+up.Host(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != 200 || got != want.String() {
			t.Errorf("tag v1: %d %s, want 200 %s (the stranger said %s)", resp.StatusCode, got, want, lie)
		}
		if n := metric(t, reps[0], "cacheyd_cluster_requests_total", map[string]string{"outcome": "unauthenticated"}); n != 1 {
			t.Errorf("unauthenticated answers counted %v, want 1", n)
		}
		checkNoCredentials(t, s, tok)
	})

	t.Run("the private-content check", func(t *testing.T) {
		reps, s := strangerCluster(t, up, func(backend string) *stranger { return newStranger(t, "proxy", backend, lie) },
			ownedBy(secretDg))
		target := reps[0].base + "/v2/team/secret/blobs/" + secretDg + "?ns=" + up.Host()
		// alice pulls her layer, with her credentials, through the
		// stranger (it relays GETs to a replica): it is cached as hers.
		tok := token(t, up, "team/secret", "alice", "pw")
		status, body := getWith(t, target, "Bearer "+tok)
		if status != 200 || string(body) != string(private) {
			t.Fatalf("alice: %d %q", status, body)
		}
		// Anyone else is refused, whatever the stranger says.
		if status, body := getWith(t, target, ""); status != http.StatusUnauthorized || strings.Contains(string(body), string(private)) {
			t.Errorf("anonymous: %d %q; want 401, never alice's layer", status, body)
		}
		sealed := 0
		for _, r := range s.requests() {
			if r.Header.Get(peerauth.AuthorizationHeader) != "" {
				sealed++
			}
		}
		if sealed == 0 {
			t.Error("alice's request never went through the stranger: the test shows nothing of what it sees")
		}
		checkNoCredentials(t, s, tok)
	})
}

// checkNoCredentials checks that s never got tok, nor any Authorization.
func checkNoCredentials(t *testing.T, s *stranger, tok string) {
	t.Helper()
	for _, r := range s.requests() {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the stranger got %s %s with Authorization", r.Method, r.URL.Path)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, tok) {
					t.Errorf("the stranger got the client's token in %s", k)
				}
			}
		}
	}
}

// token gets a pull token for repo from up's token endpoint, as user if
// not empty.
func token(t *testing.T, up *registrytest.Registry, repo, user, pass string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, up.URL()+"/token?service=registrytest&scope=repository:"+repo+":pull", nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("token for %s: %v", repo, err)
	}
	return tok.Token
}

// getWith GETs target with authorization, if any, and reads the answer.
func getWith(t *testing.T, target, authorization string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// holdAll accepts connections on ln and never answers them, until the test
// ends: a member that hangs.
func holdAll(t *testing.T, ln net.Listener) {
	var mu sync.Mutex // guards held
	var held []net.Conn
	done := make(chan struct{})
	// Stops when the cleanup closes ln.
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
}

// TestHangingMembersOwnNoKeys: a headless Service answers with 200
// addresses: three replicas, 20 members that accept connections and never
// answer, and 177 where nothing listens. Each replica keeps itself and the
// lowest addresses, up to cluster.MaxMembers; the hanging members never
// prove the secret, so they own no key, and six cold pulls spread over the
// replicas all succeed, each blob fetched from upstream once.
func TestHangingMembersOwnNoKeys(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	for i := range 6 {
		up.SeedImage(t, "team/app"+strconv.Itoa(i), "v1", 1, 16<<10)
	}
	up.Reset()
	lns, port := sharedPortListeners(t, 23)
	for _, ln := range lns[3:] {
		holdAll(t, ln)
	}
	answer := make([]string, 0, 200)
	for i := 1; i <= 23; i++ {
		answer = append(answer, "127.0.0."+strconv.Itoa(i))
	}
	for i := 1; len(answer) < 200; i++ {
		answer = append(answer, "127.0.1."+strconv.Itoa(i))
	}
	d := newDNS(answer...)
	reps := make([]*replica, 3)
	for i := range reps {
		cfg := replicaConfig(t, up)
		cfg.Listener, cfg.Listen = lns[i], lns[i].Addr().String()
		cfg.Cluster = cluster.Config{Peers: []string{"dns:cacheyd-peers.test:" + port}, Advertise: cfg.Listen, Secret: clusterSecret,
			Resolver: d.resolver(i), ProbeTimeout: 500 * time.Millisecond}
		reps[i] = startReplica(t, cfg)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			p := &puller.Puller{Client: &http.Client{}, Base: reps[i%3].base, Namespace: up.Host()}
			if _, err := p.Pull(t.Context(), "team/app"+strconv.Itoa(i), "v1"); err != nil {
				t.Errorf("cold pull %d through replica %d: %v", i, i%3, err)
			}
		})
	}
	wg.Wait()
	for _, r := range up.Requests() {
		if r.Method == http.MethodGet && (r.Kind == registrytest.KindManifest || r.Kind == registrytest.KindBlob) {
			if n := up.Count(http.MethodGet, r.Kind, r.Ref); n != 1 {
				t.Errorf("upstream sent %s %s %d times, want once", r.Kind, r.Ref, n)
			}
		}
	}
	for i, r := range reps {
		if n := metric(t, r, "cacheyd_cluster_members", nil); n != cluster.MaxMembers {
			t.Errorf("replica %d sees %v members, want %d", i, n, cluster.MaxMembers)
		}
		for _, h := range lns[3:] {
			if n := metric(t, r, "cacheyd_cluster_member_skipped", map[string]string{"member": h.Addr().String()}); n != 1 {
				t.Errorf("replica %d: hanging member %s has skip gauge %v, want 1", i, h.Addr(), n)
			}
		}
		if n := metric(t, r, "cacheyd_cluster_requests_total", map[string]string{"to": "peer", "outcome": "fallback"}); n != 0 {
			t.Errorf("replica %d asked a member that failed %v times, want never", i, n)
		}
		if n := r.logs.count("ERROR", "more members than a cluster may have"); n != 1 {
			t.Errorf("replica %d logged the answer over the cap %d times, want once", i, n)
		}
	}
}
