package cluster_test

import (
	"context"
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

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// clusterSecret is the cluster secret of the tests' replicas.
const clusterSecret = "the-replicas-secret-0123456789abcdefghij"

// replica is one cacheyd of a test's cluster, started through app.Start
// on 127.0.0.1.
type replica struct {
	addr, base string
	stop       func() error
	logs       *logRecorder // what it logged at Warn and above
}

// startReplicas starts n replicas in front of up, each listing all n as its
// members. mod, if set, changes replica i's configuration.
func startReplicas(t *testing.T, up *registrytest.Registry, n int, mod func(i int, cfg *app.Config)) []*replica {
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
	reps := make([]*replica, n)
	for i := range reps {
		cfg := replicaConfig(t, up)
		cfg.Listener, cfg.Listen = lns[i], addrs[i]
		cfg.Cluster = cluster.Config{Peers: addrs, Advertise: addrs[i], Secret: clusterSecret}
		if mod != nil {
			mod(i, &cfg)
		}
		reps[i] = startReplica(t, cfg)
	}
	return reps
}

// replicaConfig is a test cacheyd in front of up: its own cache directory,
// up mapped and its CDN allowed, quick to stop.
func replicaConfig(t *testing.T, up *registrytest.Registry) app.Config {
	cfg := app.Defaults()
	// A free loopback port, never the conventional one: a replica started
	// alone has no listener of its own.
	cfg.Listen, cfg.ShutdownTimeout = "127.0.0.1:0", 5*time.Second
	cfg.Cache.Dir, cfg.Cache.MemoryBytes, cfg.Cache.DiskBytes = t.TempDir(), 64<<20, 1<<30
	cfg.Upstream.RegistryURLs = map[string]string{up.Host(): up.URL()}
	cfg.Upstream.AllowedHosts = []string{up.CDNHost()}
	return cfg
}

func startReplica(t *testing.T, cfg app.Config) *replica {
	t.Helper()
	logs := &logRecorder{}
	base, stop, err := app.Start(t.Context(), cfg, slog.New(logs))
	if err != nil {
		t.Fatalf("replica did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("replica %s stopped with: %v", cfg.Cluster.Advertise, err)
		}
	})
	return &replica{addr: cfg.Cluster.Advertise, base: base, stop: stop, logs: logs}
}

// metric sums a replica's series of name whose labels include want.
func metric(t *testing.T, r *replica, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(r.base + "/metrics")
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
	mf := mfs[name]
	if mf == nil {
		return 0
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

// getBlob reads a blob like a node: GET from the first base, and on a
// broken body a resume with Range from the next base (a Service sends a
// new connection elsewhere), up to len(bases) times. It returns an error
// unless it got all of want, verified.
func getBlob(ctx context.Context, bases []string, ns, repo string, want []byte, started chan<- struct{}) error {
	dg := oci.FromBytes(want)
	h := dg.NewHash()
	var have int64
	told := false
	for i := range len(bases) + 1 {
		base := bases[i%len(bases)]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+string(dg)+"?ns="+ns, nil)
		if err != nil {
			return err
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		if want := map[bool]int{false: 200, true: 206}[have > 0]; resp.StatusCode != want {
			resp.Body.Close()
			return fmt.Errorf("%s: status %d, want %d", base, resp.StatusCode, want)
		}
		buf := make([]byte, 256<<10)
		for {
			n, err := resp.Body.Read(buf)
			h.Write(buf[:n])
			have += int64(n)
			if !told && have >= 1<<20 && started != nil {
				told = true
				started <- struct{}{}
			}
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if have == int64(len(want)) {
			break
		}
	}
	if have != int64(len(want)) || !dg.Matches(h) {
		return fmt.Errorf("got %d of %d bytes of %s, or the wrong ones", have, len(want), dg.Short())
	}
	return nil
}

// logRecorder keeps the messages of the records at Warn and above, for a
// test to look for what a replica logged.
type logRecorder struct {
	mu   sync.Mutex // guards msgs
	msgs []string   // "LEVEL message err"
}

func (l *logRecorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *logRecorder) WithGroup(string) slog.Handler                 { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	msg := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg += " " + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, msg)
	l.mu.Unlock()
	return nil
}

// count returns how many records hold every one of words.
func (l *logRecorder) count(words ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, m := range l.msgs {
		for _, w := range words {
			if !strings.Contains(m, w) {
				continue next
			}
		}
		n++
	}
	return n
}

// listen returns a loopback listener for a replica whose address others
// must know before it starts.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// asPeer makes req a peer's request, proven with secret, as a replica sends
// it.
func asPeer(t *testing.T, req *http.Request, secret string) {
	t.Helper()
	k, err := peerauth.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	p := peerauth.NewProof(time.Now())
	req.Header.Set(oci.HopHeader, "1")
	req.Header.Set(peerauth.ProofHeader, k.Sign(p, peerauth.Request{Method: req.Method, URI: req.URL.RequestURI(),
		Range: req.Header.Get("Range"), Accept: req.Header.Get("Accept"), Via: req.Header.Get(oci.ViaHeader)}))
}

// drain reads a response to its end.
func drain(r io.ReadCloser) { _, _ = io.Copy(io.Discard, r); r.Close() }

func readAllResp(r *http.Response) ([]byte, error) {
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", r.StatusCode)
	}
	return io.ReadAll(r.Body)
}
