package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
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

// front is a member of the cluster that holds the secret and misbehaves:
// it stands in front of a real replica, passes its probes and, as its mode
// says, stalls, redirects or corrupts what it answers under /v2.
type front struct {
	srv  *httptest.Server
	addr string
	mode string // "stall", "302" or "bytes"

	mu    sync.Mutex // guards asked
	asked int        // /v2 requests
}

func newFront(t *testing.T, backend, mode string) *front {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	f := &front{mode: mode}
	keys, err := peerauth.New(clusterSecret)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1 // every byte on at once, as a replica sends it
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasPrefix(resp.Request.URL.Path, "/v2/") || resp.StatusCode/100 != 2 || resp.Request.Method != http.MethodGet {
			return nil
		}
		switch mode {
		case "stall":
			resp.Body = &stallAfter{r: resp.Body, left: 1000, ctx: resp.Request.Context()}
		case "bytes":
			// The headers, and so the proof, stay right: only the body,
			// which no proof covers, is wrong (as anyone on the path of
			// plain HTTP could make it).
			resp.Body = &flipAt{r: resp.Body, at: 100}
		}
		return nil
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/") {
			f.mu.Lock()
			f.asked++
			f.mu.Unlock()
			if mode == "302" {
				p, err := keys.Verify(r.Header.Get(peerauth.ProofHeader), peerauth.Request{Method: r.Method, URI: r.URL.RequestURI(),
					Range: r.Header.Get("Range"), Accept: r.Header.Get("Accept"), Via: r.Header.Get(oci.ViaHeader),
					Sealed: r.Header.Get(peerauth.AuthorizationHeader)}, time.Now())
				if err != nil {
					w.WriteHeader(http.StatusForbidden)
					return
				}
				h := w.Header()
				h.Set("Location", "http://elsewhere.example/blob")
				h.Set("Content-Length", "0")
				h["Content-Type"] = nil
				h.Set(peerauth.AnswerHeader, keys.SignAnswer(p, peerauth.AnswerOf(http.StatusFound, h, 0)))
				w.WriteHeader(http.StatusFound)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.addr = strings.TrimPrefix(f.srv.URL, "http://")
	return f
}

func (f *front) v2Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

// stallAfter passes left bytes on, then sends nothing until ctx ends.
type stallAfter struct {
	r    io.ReadCloser
	left int
	ctx  context.Context
}

func (s *stallAfter) Read(p []byte) (int, error) {
	if s.left <= 0 {
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	n, err := s.r.Read(p[:min(len(p), s.left)])
	s.left -= n
	return n, err
}

func (s *stallAfter) Close() error { return s.r.Close() }

// flipAt flips the bits of the byte at offset at.
type flipAt struct {
	r   io.ReadCloser
	at  int64
	off int64
}

func (f *flipAt) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipAt) Close() error { return f.r.Close() }

// TestMisbehavingMembersAreSkipped: the owner of a blob that stalls in the
// middle of its body, answers 3xx, or sends bytes that are not the digest
// (its proof, over the headers, is right) is skipped by the replica that
// asked it, counted, and the next member asked: the client's pull
// succeeds, at once for a stall or a redirect; bytes found wrong at their
// end fail that one fill (a cache never completes wrong bytes), and the
// client's next attempt succeeds without asking the member again.
func TestMisbehavingMembersAreSkipped(t *testing.T) {
	for _, tt := range []struct {
		mode, outcome string
	}{
		{"stall", "stalled"},
		{"302", "wrong"},
		{"bytes", "wrong"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{})
			lns := []net.Listener{listen(t), listen(t), listen(t)}
			f := newFront(t, "http://"+lns[1].Addr().String(), tt.mode)
			addrs := []string{lns[0].Addr().String(), f.addr, lns[2].Addr().String()}
			// A blob the front owns, which replica 0 does not rank second.
			var data []byte
			var dg string
			for i := 0; ; i++ {
				if i == 100 {
					t.Fatal("no digest of 100 that the front owns")
				}
				data = bytes.Repeat([]byte(fmt.Sprintf("layer %d ", i)), 32<<10)
				dg = string(oci.FromBytes(data))
				if r := cluster.Rank(addrs, dg); r[0] == f.addr {
					break
				}
			}
			up.SeedBlob(t, "team/app", data)
			up.Reset()
			reps := make([]*replica, 3)
			for i := range reps {
				cfg := replicaConfig(t, up)
				cfg.Listener, cfg.Listen = lns[i], lns[i].Addr().String()
				cfg.Cache.FillParallel = 1
				cfg.Cluster = cluster.Config{Peers: addrs, Advertise: addrs[i], Secret: clusterSecret, BodyIdle: 300 * time.Millisecond}
				reps[i] = startReplica(t, cfg)
			}
			get := func() ([]byte, int, error) {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, reps[0].base+"/v2/team/app/blobs/"+dg+"?ns="+up.Host(), nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return nil, 0, err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				return body, resp.StatusCode, err
			}
			body, status, err := get()
			if tt.mode == "bytes" {
				if err == nil && status == http.StatusOK && bytes.Equal(body, data) {
					t.Fatal("a fill from a member sending wrong bytes completed: it had the right bytes after all?")
				}
				if err == nil && status == http.StatusOK {
					t.Fatalf("wrong bytes were served whole (%d bytes): a cache must never complete them", len(body))
				}
				body, status, err = get() // the client tries again, as containerd does
			}
			if err != nil || status != http.StatusOK || !bytes.Equal(body, data) {
				t.Fatalf("pull: %d, %d bytes, %v; want the %d bytes", status, len(body), err, len(data))
			}
			if n := f.v2Requests(); n != 1 {
				t.Errorf("the misbehaving member was asked %d times, want once", n)
			}
			if n := metric(t, reps[0], "cacheyd_cluster_requests_total", map[string]string{"to": "peer", "outcome": tt.outcome}); n != 1 {
				t.Errorf("outcome %s counted %v times, want 1", tt.outcome, n)
			}
			if n := metric(t, reps[0], "cacheyd_cluster_member_skipped", map[string]string{"member": f.addr}); n != 1 {
				t.Errorf("the misbehaving member's skip gauge is %v, want 1", n)
			}
		})
	}
}
