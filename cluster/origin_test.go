package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/retry"
)

var content = []byte("0123456789abcdefghij")

// The cluster secret of the tests' replicas, and another cluster's.
const (
	testSecret  = "the-cluster-secret-0123456789abcdefghij"
	otherSecret = "not-the-cluster-secret-0123456789abcdefg"
)

func mustKeys(secret string) *peerauth.Keys {
	k, err := peerauth.New(secret)
	if err != nil {
		panic(err)
	}
	return k
}

// fakePeer is a cacheyd as a peer sees it: it checks the proof of what it
// is asked, records it, and answers as its mode says, with its proof.
type fakePeer struct {
	srv  *httptest.Server
	addr string

	mu     sync.Mutex     // guards the fields below
	keys   *peerauth.Keys // the secret it holds
	mode   string         // "ok", "503", "404", "guard", "break", and the wrong answers below
	data   []byte         // the content it answers with
	reqs   []*http.Request
	probes int
}

func newFakePeer(t *testing.T) *fakePeer {
	p := &fakePeer{mode: "ok", data: content, keys: mustKeys(testSecret)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.addr = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

func (p *fakePeer) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
}

// holds makes it hold secret (another cluster's, say).
func (p *fakePeer) holds(secret string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = mustKeys(secret)
}

// asked returns the /v2 requests it was asked, probes aside.
func (p *fakePeer) asked() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*http.Request(nil), p.reqs...)
}

func (p *fakePeer) probed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes
}

// provingWriter adds the answer's proof as the header is written.
type provingWriter struct {
	http.ResponseWriter
	keys  *peerauth.Keys
	proof peerauth.Proof
	wrote bool
}

func (w *provingWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		if _, ok := w.Header()["Content-Type"]; !ok {
			w.Header()["Content-Type"] = nil // as sent: none, not a sniffed one
		}
		n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64)
		if err != nil {
			n = -1
		}
		w.Header().Set(peerauth.AnswerHeader, w.keys.SignAnswer(w.proof, peerauth.AnswerOf(status, w.Header(), n)))
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *provingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *provingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (p *fakePeer) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	keys, mode, content := p.keys, p.mode, p.data
	p.mu.Unlock()
	pr := peerauth.Request{Method: r.Method, URI: r.URL.RequestURI(), Range: r.Header.Get("Range"), Accept: r.Header.Get("Accept"),
		Via: r.Header.Get(oci.ViaHeader), Sealed: r.Header.Get(peerauth.AuthorizationHeader)}
	proof, err := keys.Verify(r.Header.Get(peerauth.ProofHeader), pr, time.Now())
	if r.URL.Path == peerauth.ProbePath {
		p.mu.Lock()
		p.probes++
		p.mu.Unlock()
		if err != nil {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w = &provingWriter{ResponseWriter: w, keys: keys, proof: proof}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, r.Clone(context.Background()))
	p.mu.Unlock()
	if r.Header.Get(oci.HopHeader) != "" {
		if err != nil {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if mode != "unproven" {
			w = &provingWriter{ResponseWriter: w, keys: keys, proof: proof}
		}
	}
	answer := func(status int, body string, header ...string) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	switch mode {
	case "503":
		answer(http.StatusServiceUnavailable, `{"errors":[{"code":"UNAVAILABLE","message":"upstream down"}]}`)
		return
	case "404":
		answer(http.StatusNotFound, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`)
		return
	case "guard":
		answer(http.StatusUnauthorized, "", "WWW-Authenticate", oci.TokenHeader+` realm="cacheyd"`)
		return
	case "relayed 502":
		answer(http.StatusBadGateway, `{"errors":[{"code":"UNAVAILABLE","message":"upstream registry failed the transfer"}]}`, oci.RelayedHeader, "1")
		return
	case "relayed guard":
		// A registry whose challenge looks like cacheyd's own guard,
		// passed on by the peer.
		answer(http.StatusUnauthorized, "", oci.RelayedHeader, "1", "WWW-Authenticate", oci.TokenHeader+` realm="cacheyd"`)
		return
	case "302":
		answer(http.StatusFound, "", "Location", "http://elsewhere.example/blob")
		return
	case "508":
		answer(http.StatusLoopDetected, "")
		return
	}
	off := int64(0)
	if rg := r.Header.Get("Range"); rg != "" {
		off, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", string(oci.FromBytes(content)))
	if mode == "digest" {
		h.Set("Docker-Content-Digest", string(oci.FromBytes([]byte("another object"))))
	}
	h.Set(oci.SourceHeader, "joined")
	h.Set("Content-Length", strconv.Itoa(len(content)-int(off)))
	status := http.StatusOK
	switch {
	case mode == "range":
		// A range the request did not ask for.
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off+1, len(content)-1, len(content)))
		h.Set("Content-Length", strconv.Itoa(len(content)-int(off)-1))
		status = http.StatusPartialContent
		off++
	case off > 0:
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(content)-1, len(content)))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	switch mode {
	case "bytes":
		wrong := bytes.Clone(content[off:])
		wrong[0] ^= 0xff
		w.Write(wrong)
		return
	case "stall":
		w.Write(content[off : off+4])
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // until the asking replica gives up
		return
	case "break":
		w.Write(content[off : off+4])
		http.NewResponseController(w).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
		return
	}
	w.Write(content[off:])
}

// countingUpstream is the upstream behind the origin.
type countingUpstream struct {
	mu   sync.Mutex // guards reqs
	reqs []oci.Request
	data []byte // nil: content
}

func (u *countingUpstream) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	u.mu.Lock()
	u.reqs = append(u.reqs, *req)
	u.mu.Unlock()
	content := content
	if u.data != nil {
		content = u.data
	}
	n := int64(len(content))
	return &oci.Response{Digest: oci.FromBytes(content), Size: n, End: n, Body: io.NopCloser(strings.NewReader(string(content)))}, nil
}

func (u *countingUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// trio is an origin whose replica is self, with two peers, and a key
// ranked owner, second, self.
type trio struct {
	o                   *composed
	owner, second, self *fakePeer
	up                  *countingUpstream
	m                   *metrics.Metrics
	req                 oci.Request
	data                []byte // the content of req's digest
}

func newTrio(t *testing.T, mod func(*Config)) *trio {
	a, b, s := newFakePeer(t), newFakePeer(t), newFakePeer(t)
	tr := &trio{self: s, up: &countingUpstream{}, m: metrics.New(nil)}
	cfg := Config{Peers: []string{a.addr, b.addr, s.addr}, Advertise: s.addr, Token: "t0ken-t0ken-t0ken", Secret: testSecret,
		Metrics: tr.m, Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	tr.o = compose(t, cfg, tr.up)
	byAddr := map[string]*fakePeer{a.addr: a, b.addr: b, s.addr: s}
	for i := 0; ; i++ {
		// Content of content's length whose digest this replica ranks
		// last: every peer and upstream answer with it.
		data := []byte(fmt.Sprintf("%0*d", len(content), i))
		dg := oci.FromBytes(data)
		r := Rank(cfg.Peers, string(dg))
		if r[2] == s.addr {
			tr.owner, tr.second = byAddr[r[0]], byAddr[r[1]]
			tr.data, tr.up.data = data, data
			for _, p := range byAddr {
				p.mu.Lock()
				p.data = data
				p.mu.Unlock()
			}
			tr.req = oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io",
				Repository: "library/app", Reference: oci.Reference{Digest: dg}}
			return tr
		}
	}
}

func read(t *testing.T, resp *oci.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return string(b)
}

// TestTheOwnerIsAskedAsAClientWouldAsk: a miss goes to the key's owner
// only, over its /v2 API with the same ns, Range and Authorization, the
// hop header and the client token; its Content-Range and source are read.
func TestTheOwnerIsAskedAsAClientWouldAsk(t *testing.T) {
	tr := newTrio(t, nil)
	req := tr.req
	req.Offset, req.Authorization = 5, "Bearer client"
	if got := tr.o.Route(&req); got != tr.owner.addr {
		t.Errorf("Route = %q, want the owner %s", got, tr.owner.addr)
	}
	resp, err := tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Offset != 5 || resp.Size != int64(len(tr.data)) || resp.Digest != oci.FromBytes(tr.data) {
		t.Errorf("response %+v, want offset 5 of %d bytes", resp, len(tr.data))
	}
	if got := read(t, resp); got != string(tr.data[5:]) {
		t.Errorf("body %q, want %q", got, tr.data[5:])
	}
	asked := tr.owner.asked()
	if len(asked) != 1 || len(tr.second.asked()) != 0 || len(tr.self.asked()) != 0 || tr.up.count() != 0 {
		t.Fatalf("asked owner %d, second %d, self %d, upstream %d times; want the owner once", len(asked),
			len(tr.second.asked()), len(tr.self.asked()), tr.up.count())
	}
	r := asked[0]
	for h, want := range map[string]string{"Range": "bytes=5-", "Authorization": "", oci.HopHeader: "1",
		oci.TokenHeader: "t0ken-t0ken-t0ken", "Accept-Encoding": "identity"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	// The client's Authorization goes sealed with the cluster secret.
	k := mustKeys(testSecret)
	pr := peerauth.Request{Method: r.Method, URI: r.URL.RequestURI(), Range: r.Header.Get("Range"), Sealed: r.Header.Get(peerauth.AuthorizationHeader)}
	proof, err := k.Verify(r.Header.Get(peerauth.ProofHeader), pr, time.Now())
	if err != nil {
		t.Fatalf("the request's proof: %v", err)
	}
	if auth, err := k.Unseal(proof, r.URL.RequestURI(), r.Header.Get(peerauth.AuthorizationHeader)); err != nil || auth != "Bearer client" {
		t.Errorf("sealed Authorization opens to %q, %v; want the client's", auth, err)
	}
	if want := "/v2/library/app/blobs/" + string(req.Reference.Digest); r.URL.Path != want || r.URL.Query().Get("ns") != "docker.io" {
		t.Errorf("asked %s?%s, want %s?ns=docker.io", r.URL.Path, r.URL.RawQuery, want)
	}
	if n := testutil.ToFloat64(tr.m.ClusterRequests.WithLabelValues("peer", "joined")); n != 1 {
		t.Errorf("cluster requests {peer, joined} = %v, want 1", n)
	}
}

// TestFailuresFallBackByRank: an owner answering 5xx is passed over (and
// asked again next time: it is up), an unreachable one is skipped for the
// backoff; work routed to a peer then asks this replica itself as a peer;
// when that fails too, upstream. Work keyed as this replica's own fetches
// itself.
func TestFailuresFallBackByRank(t *testing.T) {
	tr := newTrio(t, nil)
	tr.owner.set("503")
	tr.second.srv.Close() // unreachable
	tr.self.set("503")
	req := tr.req
	req.Route = tr.o.Route(&req) // as the cache keys its fill
	resp, err := tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, resp); got != string(tr.data) {
		t.Errorf("body %q", got)
	}
	if n, s := len(tr.owner.asked()), len(tr.self.asked()); n != 1 || s != 1 || tr.up.count() != 1 {
		t.Errorf("asked owner %d, self %d, upstream %d times; want each once", n, s, tr.up.count())
	}
	if h := tr.self.asked()[0].Header.Get(oci.HopHeader); h != "1" {
		t.Errorf("asking itself without the hop header (%q): it would forward again", h)
	}
	if n := testutil.ToFloat64(tr.m.ClusterDirect.WithLabelValues("fallback")); n != 1 {
		t.Errorf("direct {fallback} = %v, want 1", n)
	}
	// The unreachable one is skipped now; the 5xx one is asked again.
	tr.owner.set("ok")
	if got := tr.o.Route(&req); got != tr.owner.addr {
		t.Errorf("Route = %q, want the owner again", got)
	}
	tr.owner.set("503")
	resp, err = tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	read(t, resp)
	if n, s := len(tr.owner.asked()), len(tr.self.asked()); n != 2 || s != 2 || tr.up.count() != 2 {
		t.Errorf("second fetch: asked owner %d, self %d, upstream %d times in all; want 2 each (the unreachable one skipped)", n, s, tr.up.count())
	}
	// A request not keyed by a route (a credential check, say) that
	// reaches this replica fetches itself.
	req.Route = ""
	resp, err = tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	read(t, resp)
	if n, s := len(tr.owner.asked()), len(tr.self.asked()); n != 3 || s != 2 || tr.up.count() != 3 {
		t.Errorf("unrouted fetch: asked owner %d, self %d, upstream %d times in all; want 3, 2, 3", n, s, tr.up.count())
	}
}

// TestAnswersArePassedOn: a registry's answer from the owner (404) is the
// answer; a refusal of our client token is the owner's failure.
func TestAnswersArePassedOn(t *testing.T) {
	tr := newTrio(t, nil)
	tr.owner.set("404")
	req := tr.req
	_, err := tr.o.Fetch(t.Context(), &req)
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusNotFound || e.Code != oci.CodeBlobUnknown {
		t.Fatalf("Fetch = %v, want the owner's 404 BLOB_UNKNOWN", err)
	}
	if tr.up.count() != 0 || len(tr.second.asked()) != 0 {
		t.Error("a 404 from the owner was asked elsewhere")
	}
	tr.owner.set("guard")
	resp, err := tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatalf("Fetch with the token refused = %v, want the second's answer", err)
	}
	read(t, resp)
	if len(tr.second.asked()) != 1 {
		t.Errorf("second asked %d times, want 1", len(tr.second.asked()))
	}
}

// TestAPeersRequestIsNeverForwarded: with the hop header, this replica
// fetches itself whoever owns the key.
func TestAPeersRequestIsNeverForwarded(t *testing.T) {
	tr := newTrio(t, nil)
	req := tr.req
	req.FromPeer = true
	if got := tr.o.Route(&req); got != "" {
		t.Errorf("Route of a peer's request = %q, want this replica", got)
	}
	resp, err := tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	read(t, resp)
	if len(tr.owner.asked())+len(tr.second.asked())+len(tr.self.asked()) != 0 || tr.up.count() != 1 {
		t.Errorf("a peer's request went to a peer, or not once upstream (%d)", tr.up.count())
	}
	if n := testutil.ToFloat64(tr.m.ClusterDirect.WithLabelValues("peer")); n != 1 {
		t.Errorf("direct {peer} = %v, want 1", n)
	}
}

// TestACutBodyAsksThePeerAgain: an owner that cuts its body is not
// skipped for it (it may only be relaying its own upstream's cut): the
// retry wrapper's resume asks it again; an owner unreachable then is
// skipped, and the resume finds the next source.
func TestACutBodyAsksThePeerAgain(t *testing.T) {
	tr := newTrio(t, nil)
	tr.owner.set("break")
	req := tr.req
	req.Route = tr.o.Route(&req)
	resp, err := tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a broken body read to its end")
	}
	if got := tr.o.Route(&req); got != tr.owner.addr {
		t.Errorf("Route after the owner cut its body = %q, want the owner %s still", got, tr.owner.addr)
	}
	if n := testutil.ToFloat64(tr.m.ClusterRequests.WithLabelValues("peer", "broken")); n != 1 {
		t.Errorf("cluster requests {peer, broken} = %v, want 1", n)
	}
	tr.owner.srv.Close()
	req.Offset = 4
	resp, err = tr.o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, resp); got != string(tr.data[4:]) {
		t.Errorf("resumed body %q, want %q", got, tr.data[4:])
	}
	if n := len(tr.second.asked()); n != 1 {
		t.Errorf("second asked %d times, want once, for the resume", n)
	}
	if got := tr.o.Route(&req); got != tr.second.addr {
		t.Errorf("Route after the owner went = %q, want the second %s", got, tr.second.addr)
	}
}

// TestRelayedFailuresArePassedOn: an upstream failure the owner relayed
// (oci.RelayedHeader) is the answer: passed on with its status and
// challenge, wrapping oci.ErrRelayed, with no second member, no upstream
// and no skip of the owner; a registry's challenge that mimics the guard's
// is no refusal of our token when it is marked.
func TestRelayedFailuresArePassedOn(t *testing.T) {
	for _, tt := range []struct {
		mode      string
		status    int
		challenge string
	}{
		{"relayed 502", http.StatusBadGateway, ""},
		{"relayed guard", http.StatusUnauthorized, oci.TokenHeader + ` realm="cacheyd"`},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			tr := newTrio(t, nil)
			tr.owner.set(tt.mode)
			req := tr.req
			req.Route = tr.o.Route(&req)
			_, err := tr.o.Fetch(t.Context(), &req)
			if !errors.Is(err, oci.ErrRelayed) {
				t.Fatalf("Fetch = %v, want the relayed failure", err)
			}
			if e, ok := oci.AsError(err); !ok || e.Status != tt.status || e.Challenge != tt.challenge || !e.Upstream {
				t.Errorf("Fetch = %+v, want upstream's %d with challenge %q", e, tt.status, tt.challenge)
			}
			if n := len(tr.second.asked()) + len(tr.self.asked()); n != 0 || tr.up.count() != 0 {
				t.Errorf("asked the others %d times and upstream %d: a relayed failure was fetched around", n, tr.up.count())
			}
			if got := tr.o.Route(&req); got != tr.owner.addr {
				t.Errorf("Route = %q, want the owner %s: a relayed failure is not its own", got, tr.owner.addr)
			}
			if n := testutil.ToFloat64(tr.m.ClusterRequests.WithLabelValues("peer", "relayed")); n != 1 {
				t.Errorf("cluster requests {peer, relayed} = %v, want 1", n)
			}
		})
	}
}

// TestWrongAnswersSkipThePeer: an answer no cacheyd gives (a redirect, a
// range not asked for, another digest, bytes that are not the digest) is
// the owner's failure: it is skipped, counted as wrong, and the next
// member asked; bytes that are not the object never complete.
func TestWrongAnswersSkipThePeer(t *testing.T) {
	for _, mode := range []string{"302", "range", "digest", "bytes"} {
		t.Run(mode, func(t *testing.T) {
			tr := newTrio(t, nil)
			tr.owner.set(mode)
			req := tr.req
			req.Route = tr.o.Route(&req)
			if mode == "range" {
				req.Offset = 4
			}
			resp, err := tr.o.Fetch(t.Context(), &req)
			if mode == "bytes" {
				// The bytes are found wrong at their end: the body fails
				// one byte short, and the resume goes to the next member.
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !errors.Is(err, oci.ErrDigestMismatch) || len(got) != len(tr.data)-1 {
					t.Fatalf("wrong bytes: read %d bytes, %v; want all but the last, then a digest mismatch", len(got), err)
				}
				req.Offset = int64(len(got))
				resp, err = tr.o.Fetch(t.Context(), &req)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := read(t, resp); got != string(tr.data[req.Offset:]) {
				t.Errorf("body %q, want %q", got, tr.data[req.Offset:])
			}
			if n, s := len(tr.owner.asked()), len(tr.second.asked()); n != 1 || s != 1 {
				t.Errorf("asked the owner %d and the second %d times, want each once", n, s)
			}
			if got := tr.o.Route(&req); got != tr.second.addr {
				t.Errorf("Route = %q, want the second %s: the owner is skipped", got, tr.second.addr)
			}
			if n := testutil.ToFloat64(tr.m.ClusterRequests.WithLabelValues("peer", "wrong")); n != 1 {
				t.Errorf("cluster requests {peer, wrong} = %v, want 1", n)
			}
		})
	}
}

// TestAStalledBodySkipsThePeer: an owner whose body sends nothing for
// Config.BodyIdle (the answer's oci.Response.Idle, which the retry wrapper
// honours over its own idle timeout) is skipped, and the resume comes from
// the next member.
func TestAStalledBodySkipsThePeer(t *testing.T) {
	tr := newTrio(t, func(c *Config) { c.BodyIdle = 50 * time.Millisecond })
	tr.owner.set("stall")
	req := tr.req
	req.Route = tr.o.Route(&req)
	r := retry.New(tr.o, retry.Config{IdleTimeout: time.Hour, Backoff: time.Millisecond})
	// Bounded, so that an owner never given up on fails the test.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := r.Fetch(ctx, &req)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, resp); got != string(tr.data) {
		t.Errorf("body %q, want %q", got, tr.data)
	}
	// The owner sent 4 bytes; the verifying reader held back the newest
	// until the end, so 3 reached the reader and the rest is asked for.
	if n, s := len(tr.owner.asked()), tr.second.asked(); n != 1 || len(s) != 1 || s[0].Header.Get("Range") != "bytes=3-" {
		t.Fatalf("asked the owner %d times and the second %v; want each once, the second for the rest", n, s)
	}
	if got := tr.o.Route(&req); got != tr.second.addr {
		t.Errorf("Route = %q, want the second %s: the owner is skipped", got, tr.second.addr)
	}
	if n := testutil.ToFloat64(tr.m.ClusterRequests.WithLabelValues("peer", "stalled")); n != 1 {
		t.Errorf("cluster requests {peer, stalled} = %v, want 1", n)
	}
}

// TestTheParentComesBeforeUpstream: with a parent, what this replica
// fetches itself comes from the parent, asked without the hop header (its
// own cluster may forward it); a failing parent falls back to upstream.
func TestTheParentComesBeforeUpstream(t *testing.T) {
	parent := newFakePeer(t)
	up := &countingUpstream{}
	m := metrics.New(nil)
	o := compose(t, Config{Parent: parent.srv.URL, Metrics: m, Logger: quiet()}, up)
	dg := oci.FromBytes(content)
	req := oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "ghcr.io", Repository: "org/app", Reference: oci.Reference{Digest: dg}}
	resp, err := o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	read(t, resp)
	asked := parent.asked()
	if len(asked) != 1 || up.count() != 0 {
		t.Fatalf("parent asked %d times, upstream %d; want the parent once", len(asked), up.count())
	}
	if h := asked[0].Header.Get(oci.HopHeader); h != "" {
		t.Errorf("the parent was asked with the hop header %q", h)
	}
	parent.set("503")
	resp, err = o.Fetch(t.Context(), &req)
	if err != nil {
		t.Fatal(err)
	}
	read(t, resp)
	if up.count() != 1 {
		t.Errorf("upstream asked %d times after the parent failed, want 1", up.count())
	}
	parent.srv.Close()
	for range 2 {
		resp, err = o.Fetch(t.Context(), &req)
		if err != nil {
			t.Fatal(err)
		}
		read(t, resp)
	}
	// Unreachable once, then skipped: the third fetch does not try it.
	if n := testutil.ToFloat64(m.ClusterDirect.WithLabelValues("parent-failed")); n != 2 {
		t.Errorf("direct {parent-failed} = %v, want 2 (the 503 and the unreachable parent)", n)
	}
	if up.count() != 3 {
		t.Errorf("upstream asked %d times, want 3", up.count())
	}
}

// TestListingsGoUpstream: a tag list or referrers lookup is asked upstream
// by the replica that got it, never routed to an owner or the parent, whose
// peer client speaks only manifests and blobs.
func TestListingsGoUpstream(t *testing.T) {
	parent := newFakePeer(t)
	tr := newTrio(t, func(c *Config) { c.Parent = parent.srv.URL })
	for _, kind := range []oci.Kind{oci.KindTags, oci.KindReferrers} {
		req := tr.req
		req.Kind = kind
		if got := tr.o.Route(&req); got != "" {
			t.Errorf("%s: Route = %q, want this replica", kind, got)
		}
		resp, err := tr.o.Fetch(t.Context(), &req)
		if err != nil {
			t.Fatal(err)
		}
		read(t, resp)
	}
	if n := len(tr.owner.asked()) + len(tr.second.asked()) + len(tr.self.asked()) + len(parent.asked()); n != 0 || tr.up.count() != 2 {
		t.Errorf("peers and parent asked %d times, upstream %d; want upstream twice only", n, tr.up.count())
	}
}

// TestTheParentGetsTheChain: a request to the parent carries the chain of
// cacheyds it came through with this one's id added (a peer's request
// carries it as it came); a chain that could not go one cacheyd further
// goes upstream instead, without holding it against the parent; a parent
// that answers 508 (the request came back to it) is skipped and upstream
// asked: a parent cycle costs one upstream fetch.
func TestTheParentGetsTheChain(t *testing.T) {
	parent := newFakePeer(t)
	up := &countingUpstream{}
	m := metrics.New(nil)
	o := compose(t, Config{Parent: parent.srv.URL, Instance: "me", Metrics: m, Logger: quiet()}, up)
	req := oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "ghcr.io", Repository: "org/app",
		Reference: oci.Reference{Digest: oci.FromBytes(content)}, Via: []string{"child"}}
	fetch := func(req oci.Request) {
		t.Helper()
		resp, err := o.Fetch(t.Context(), &req)
		if err != nil {
			t.Fatal(err)
		}
		read(t, resp)
	}
	fetch(req)
	if asked := parent.asked(); len(asked) != 1 || asked[0].Header.Get(oci.ViaHeader) != "child,me" {
		t.Fatalf("the parent was asked %d times, the last with Via %q; want once with child,me", len(asked), asked[len(asked)-1].Header.Get(oci.ViaHeader))
	}
	long := req
	long.Via = make([]string, oci.MaxVia-1)
	for i := range long.Via {
		long.Via[i] = strconv.Itoa(i)
	}
	fetch(long)
	if n := len(parent.asked()); n != 1 || up.count() != 1 {
		t.Errorf("a chain at its bound: parent asked %d times in all, upstream %d; want 1 and 1", n, up.count())
	}
	fetch(req)
	if n := len(parent.asked()); n != 2 {
		t.Errorf("the parent was not asked after a chain at its bound went upstream (%d)", n)
	}
	parent.set("508")
	fetch(req)
	fetch(req)
	if n := len(parent.asked()); n != 3 || up.count() != 3 {
		t.Errorf("after a 508: parent asked %d times in all, upstream %d; want 3 and 3 (the parent skipped)", n, up.count())
	}
	if n := testutil.ToFloat64(m.ClusterRequests.WithLabelValues("parent", "loop")); n != 1 {
		t.Errorf("parent loops counted %v, want 1", n)
	}
}
