package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

const (
	clusterSecret = "the-cluster-secret-0123456789abcdefghij"
	otherSecret   = "not-the-cluster-secret-0123456789abcdefg"
)

func peerKeys(t *testing.T, secret string) *peerauth.Keys {
	t.Helper()
	k, err := peerauth.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// asPeer adds to header what a replica of the cluster sends with a request
// for target: the hop header and the proof (made at when), and the client's
// Authorization sealed. It returns the proof the answer is proven over.
func asPeer(t *testing.T, k *peerauth.Keys, method, target string, header http.Header, auth string, when time.Time) peerauth.Proof {
	t.Helper()
	u, err := url.Parse("http://cacheyd.test" + target)
	if err != nil {
		t.Fatal(err)
	}
	p := peerauth.NewProof(when)
	header.Set(oci.HopHeader, "1")
	if auth != "" {
		header.Set(peerauth.AuthorizationHeader, k.Seal(p, u.RequestURI(), auth))
	}
	header.Set(peerauth.ProofHeader, k.Sign(p, peerauth.Request{Method: method, URI: u.RequestURI(),
		Range: header.Get("Range"), Accept: header.Get("Accept"), Via: header.Get(oci.ViaHeader),
		Sealed: header.Get(peerauth.AuthorizationHeader)}))
	return p
}

// checkProven checks that resp carries a proof of the answer to the
// request proven with p, as the asking replica checks it.
func checkProven(t *testing.T, k *peerauth.Keys, p peerauth.Proof, resp *http.Response) {
	t.Helper()
	a := peerauth.AnswerOf(resp.StatusCode, resp.Header, resp.ContentLength)
	if err := k.VerifyAnswer(p, a, resp.Header.Get(peerauth.AnswerHeader)); err != nil {
		t.Errorf("answer %d %+v: %v", resp.StatusCode, a, err)
	}
}

// TestHopRequestsNeedTheClusterSecret: a request with the hop header is a
// peer's only with a valid proof of the cluster secret; without one (no
// proof, another secret's, a stale one, one for another request, or no
// secret here at all) it is refused 403 DENIED, counted, and the cache is
// never asked.
func TestHopRequestsNeedTheClusterSecret(t *testing.T) {
	im := newImage()
	target := "/v2/library/app/blobs/" + string(im.blobDigest) + "?ns=docker.io"
	k, other := peerKeys(t, clusterSecret), peerKeys(t, otherSecret)
	for _, tt := range []struct {
		name   string
		secret string // the server's
		header func(h http.Header)
		want   int
	}{
		{"the hop header alone", clusterSecret, func(h http.Header) { h.Set(oci.HopHeader, "1") }, 403},
		{"another cluster's secret", clusterSecret, func(h http.Header) { asPeer(t, other, "GET", target, h, "", time.Now()) }, 403},
		{"a stale proof", clusterSecret, func(h http.Header) { asPeer(t, k, "GET", target, h, "", time.Now().Add(-2*peerauth.MaxSkew)) }, 403},
		{"a proof of another request", clusterSecret, func(h http.Header) {
			asPeer(t, k, "GET", "/v2/library/other/blobs/"+string(im.blobDigest)+"?ns=docker.io", h, "", time.Now())
		}, 403},
		{"a proof with a range added", clusterSecret, func(h http.Header) {
			asPeer(t, k, "GET", target, h, "", time.Now())
			h.Set("Range", "bytes=0-0")
		}, 403},
		{"no secret here", "", func(h http.Header) { asPeer(t, k, "GET", target, h, "", time.Now()) }, 403},
		{"a valid proof", clusterSecret, func(h http.Header) { asPeer(t, k, "GET", target, h, "", time.Now()) }, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spy := newSpy(t, im)
			m := metrics.New(nil)
			ts := startServer(t, Config{ClusterSecret: tt.secret, Metrics: m}, spy)
			h := http.Header{}
			tt.header(h)
			resp, body, err := ts.do(t, "GET", target, h)
			if err != nil || resp.StatusCode != tt.want {
				t.Fatalf("status %d (%v), want %d: %s", resp.StatusCode, err, tt.want, body)
			}
			refused := testutil.ToFloat64(m.ClusterRefused.WithLabelValues("unauthenticated"))
			if tt.want == 403 {
				if code := errorCode(t, body); code != oci.CodeDenied || !strings.Contains(string(body), "--cluster-secret") {
					t.Errorf("refusal %s, want DENIED naming --cluster-secret", body)
				}
				if n := len(spy.requests()); n != 0 || refused != 1 {
					t.Errorf("cache asked %d times, refusals counted %v; want none asked, one counted", n, refused)
				}
				return
			}
			if reqs := spy.requests(); len(reqs) != 1 || !reqs[0].FromPeer || refused != 0 {
				t.Errorf("cache asked %+v, refusals %v; want one peer's request", reqs, refused)
			}
		})
	}
}

// TestPeerAnswersAreProven: every answer to a proven request, content from
// every source, whole, by range and HEAD, and errors (a relayed 404, the
// token guard's 401), carries a proof the asking replica verifies over the
// headers as net/http reads them.
func TestPeerAnswersAreProven(t *testing.T) {
	k := peerKeys(t, clusterSecret)
	data := testData(100 << 10)
	for _, src := range sources {
		for _, mediaType := range []string{"", manifestType} {
			t.Run(src.name+" "+map[string]string{"": "blob", manifestType: "manifest"}[mediaType], func(t *testing.T) {
				sc := src.serve(t, data, mediaType)
				ts := startServer(t, Config{ClusterSecret: clusterSecret}, sc)
				kind := map[string]string{"": "blobs", manifestType: "manifests"}[mediaType]
				target := "/v2/library/app/" + kind + "/" + string(oci.FromBytes(data)) + "?ns=docker.io"
				for _, r := range []struct{ method, rng string }{{"GET", ""}, {"GET", "bytes=100-"}, {"GET", "bytes=10-20"}, {"HEAD", ""}} {
					h := http.Header{}
					if r.rng != "" {
						h.Set("Range", r.rng)
					}
					p := asPeer(t, k, r.method, target, h, "", time.Now())
					resp, _, err := ts.do(t, r.method, target, h)
					if err != nil || resp.StatusCode/100 != 2 {
						t.Fatalf("%s %s: %d, %v", r.method, r.rng, resp.StatusCode, err)
					}
					checkProven(t, k, p, resp)
				}
			})
		}
	}
	t.Run("errors", func(t *testing.T) {
		im := newImage()
		ts := startServer(t, Config{ClusterSecret: clusterSecret, ClientTokens: []string{"client-token-0123456789"}}, newSpy(t, im))
		missing := "/v2/library/app/blobs/" + string(oci.FromBytes([]byte("missing"))) + "?ns=docker.io"
		for _, tt := range []struct {
			name   string
			token  bool
			status int
		}{{"the guard's 401", false, 401}, {"upstream's 404, relayed", true, 404}} {
			h := http.Header{}
			if tt.token {
				h.Set(TokenHeader, "client-token-0123456789")
			}
			p := asPeer(t, k, "GET", missing, h, "", time.Now())
			resp, _, err := ts.do(t, "GET", missing, h)
			if err != nil || resp.StatusCode != tt.status {
				t.Fatalf("%s: %d, %v", tt.name, resp.StatusCode, err)
			}
			checkProven(t, k, p, resp)
		}
	})
}

// TestSealedAuthorizationReachesTheCache: a peer's client credentials come
// sealed and reach the cache as the request's Authorization; an
// Authorization in the clear beside a proof is not taken; a sealed one that
// does not open for this request is refused.
func TestSealedAuthorizationReachesTheCache(t *testing.T) {
	im := newImage()
	k := peerKeys(t, clusterSecret)
	target := "/v2/library/app/blobs/" + string(im.blobDigest) + "?ns=docker.io"
	spy := newSpy(t, im)
	ts := startServer(t, Config{ClusterSecret: clusterSecret}, spy)

	h := http.Header{}
	asPeer(t, k, "GET", target, h, "Bearer alice", time.Now())
	if resp, _, err := ts.do(t, "GET", target, h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sealed: %d, %v", resp.StatusCode, err)
	}
	h = http.Header{"Authorization": {"Bearer mallory"}}
	asPeer(t, k, "GET", target, h, "", time.Now())
	if resp, _, err := ts.do(t, "GET", target, h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("in the clear: %d, %v", resp.StatusCode, err)
	}
	// Sealed for another request, in a request proven with it.
	p := peerauth.NewProof(time.Now())
	h = http.Header{oci.HopHeader: {"1"}, peerauth.AuthorizationHeader: {k.Seal(peerauth.NewProof(time.Now()), target, "Bearer alice")}}
	h.Set(peerauth.ProofHeader, k.Sign(p, peerauth.Request{Method: "GET", URI: target, Sealed: h.Get(peerauth.AuthorizationHeader)}))
	if resp, body, err := ts.do(t, "GET", target, h); err != nil || resp.StatusCode != 403 || !strings.Contains(string(body), "does not open") {
		t.Fatalf("sealed for another request: %d %s, %v; want 403", resp.StatusCode, body, err)
	}
	var auths []string
	for _, r := range spy.requests() {
		auths = append(auths, r.Authorization)
	}
	if !slices.Equal(auths, []string{"Bearer alice", ""}) {
		t.Errorf("the cache saw Authorization %q, want the sealed one, then none", auths)
	}
}

// TestProbesAreAnsweredOnlyWithTheSecret: GET peerauth.ProbePath proven
// with the cluster secret is answered 200 with a proof; without the secret,
// 403.
func TestProbesAreAnsweredOnlyWithTheSecret(t *testing.T) {
	k := peerKeys(t, clusterSecret)
	ts := startServer(t, Config{ClusterSecret: clusterSecret}, newSpy(t, newImage()))
	h := http.Header{}
	p := asPeer(t, k, "GET", peerauth.ProbePath, h, "", time.Now())
	resp, _, err := ts.do(t, "GET", peerauth.ProbePath, h)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("probe: %d, %v", resp.StatusCode, err)
	}
	checkProven(t, k, p, resp)
	h = http.Header{}
	asPeer(t, peerKeys(t, otherSecret), "GET", peerauth.ProbePath, h, "", time.Now())
	if resp, _, err := ts.do(t, "GET", peerauth.ProbePath, h); err != nil || resp.StatusCode != 403 || resp.Header.Get(peerauth.AnswerHeader) != "" {
		t.Fatalf("probe with another secret: %d, %v; want 403 without a proof", resp.StatusCode, err)
	}
}

// errorCounter counts error records.
type errorCounter struct {
	mu sync.Mutex // guards msgs
	// msgs are the messages of the error records.
	msgs []string
}

func (e *errorCounter) Enabled(context.Context, slog.Level) bool { return true }
func (e *errorCounter) WithAttrs([]slog.Attr) slog.Handler       { return e }
func (e *errorCounter) WithGroup(string) slog.Handler            { return e }
func (e *errorCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e.mu.Lock()
		e.msgs = append(e.msgs, r.Message)
		e.mu.Unlock()
	}
	return nil
}

// TestRequestLoopsAreRefused: a request whose Via chain names this
// cacheyd, or is longer than oci.MaxVia, is refused 508 LOOP_DETECTED and
// counted, the error logged once for many; a chain that does not is passed
// to the cache as the request's Via.
func TestRequestLoopsAreRefused(t *testing.T) {
	im := newImage()
	spy := newSpy(t, im)
	m := metrics.New(nil)
	errs := &errorCounter{}
	ts := startServer(t, Config{Instance: "c0ffee", Metrics: m, Logger: slog.New(errs)}, spy)
	target := "/v2/library/app/blobs/" + string(im.blobDigest) + "?ns=docker.io"
	// MaxVia others: with this cacheyd, one more than a chain may hold.
	long := strings.TrimSuffix(strings.Repeat("a,", oci.MaxVia), ",")
	for _, via := range []string{"beef, c0ffee", "c0ffee", long} {
		resp, body, err := ts.do(t, "GET", target, http.Header{oci.ViaHeader: {via}})
		if err != nil || resp.StatusCode != http.StatusLoopDetected || errorCode(t, body) != "LOOP_DETECTED" {
			t.Errorf("via %q: %d %s, want 508 LOOP_DETECTED", via, resp.StatusCode, body)
		}
		if resp.Header.Get(oci.RelayedHeader) != "" {
			t.Errorf("via %q: a loop marked relayed: it is no upstream's doing", via)
		}
	}
	if n := testutil.ToFloat64(m.ClusterRefused.WithLabelValues("loop")); n != 3 {
		t.Errorf("loops counted %v, want 3", n)
	}
	errs.mu.Lock()
	logged := slices.Clone(errs.msgs)
	errs.mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], "loop") {
		t.Errorf("errors logged %q, want one about the loop", logged)
	}
	if len(spy.requests()) != 0 {
		t.Fatal("a request that came back reached the cache")
	}
	resp, _, err := ts.do(t, "GET", target, http.Header{oci.ViaHeader: {"beef, d00d"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a chain without this cacheyd: %d, %v", resp.StatusCode, err)
	}
	if reqs := spy.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].Via, []string{"beef", "d00d"}) {
		t.Errorf("cache asked %+v, want one request with Via [beef d00d]", reqs)
	}
	full := strings.TrimSuffix(strings.Repeat("b,", oci.MaxVia-1), ",")
	if resp, _, err := ts.do(t, "GET", target, http.Header{oci.ViaHeader: {full}}); err != nil || resp.StatusCode != 200 {
		t.Errorf("a chain of %d others: %d, %v; want it served (with this one, %d: as long as a chain may be)", oci.MaxVia-1, resp.StatusCode, err, oci.MaxVia)
	}
}

// TestPeerAnswersStateTheBudget: an answer to a member's manifest request,
// content or error, GET or HEAD, states the pull budget this replica last
// read from the request's registry, proven for that request; an answer to
// a blob, to a client, or for a registry it read none of states none.
func TestPeerAnswersStateTheBudget(t *testing.T) {
	im := newImage()
	k := peerKeys(t, clusterSecret)
	seen := time.Unix(1_765_158_000, 0)
	stated := peerauth.Budget{Limit: 100, Remaining: 76, Window: 6 * time.Hour, Seen: seen}
	budget := func(registry string) (peerauth.Budget, bool) {
		return stated, registry == "docker.io"
	}
	ts := startServer(t, Config{ClusterSecret: clusterSecret, PeerBudget: budget}, newSpy(t, im))
	manifest := "/v2/library/app/manifests/latest?ns=docker.io"
	missing := "/v2/library/app/manifests/" + string(oci.FromBytes([]byte("missing"))) + "?ns=docker.io"
	for _, tt := range []struct {
		name, method, target string
		peer                 bool
		status               int
		states               bool
	}{
		{"a member's manifest GET", "GET", manifest, true, 200, true},
		{"a member's manifest HEAD", "HEAD", manifest, true, 200, true},
		{"a member's manifest GET, relayed 404", "GET", missing, true, 404, true},
		{"a member's blob GET", "GET", "/v2/library/app/blobs/" + string(im.blobDigest) + "?ns=docker.io", true, 200, false},
		{"a member's manifest GET of another registry", "GET", "/v2/library/app/manifests/latest?ns=ghcr.io", true, 0, false},
		{"a client's manifest GET", "GET", manifest, false, 200, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			var p peerauth.Proof
			if tt.peer {
				p = asPeer(t, k, tt.method, tt.target, h, "", time.Now())
			}
			resp, body, err := ts.do(t, tt.method, tt.target, h)
			if err != nil || (tt.status != 0 && resp.StatusCode != tt.status) {
				t.Fatalf("%d %s (%v), want %d", resp.StatusCode, body, err, tt.status)
			}
			hdr := resp.Header.Get(peerauth.BudgetHeader)
			if !tt.states {
				if hdr != "" {
					t.Errorf("%s = %q, want none", peerauth.BudgetHeader, hdr)
				}
				return
			}
			checkProven(t, k, p, resp)
			if got, err := k.VerifyBudget(p, hdr); err != nil || got != stated {
				t.Errorf("%s %q = %+v, %v; want %+v", peerauth.BudgetHeader, hdr, got, err, stated)
			}
		})
	}
}
