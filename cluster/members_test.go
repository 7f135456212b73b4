package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// fakeResolver answers lookups of one name from a list the test changes.
type fakeResolver struct {
	mu      sync.Mutex // guards the fields below
	name    string
	answer  []string
	err     error
	lookups int
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if host != r.name {
		return nil, errors.New("no such host")
	}
	return slices.Clone(r.answer), r.err
}

func (r *fakeResolver) set(answer []string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer, r.err = answer, err
}

func skippedSeries(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.ClusterSkipped)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			out[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
		}
	}
	return out
}

// fakeProbes answers probes: members in refuse fail theirs; it counts
// the probes of each.
type fakeProbes struct {
	mu     sync.Mutex // guards the fields below
	refuse map[string]error
	after  map[string]int // refuse only the first n probes
	hang   map[string]bool
	count  map[string]int
}

func newFakeProbes() *fakeProbes {
	return &fakeProbes{refuse: map[string]error{}, after: map[string]int{}, hang: map[string]bool{}, count: map[string]int{}}
}

func (f *fakeProbes) probe(ctx context.Context, addr string) error {
	f.mu.Lock()
	f.count[addr]++
	err, hang := f.refuse[addr], f.hang[addr]
	if n, ok := f.after[addr]; ok && f.count[addr] > n {
		err = nil
	}
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeProbes) set(addr string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse[addr] = err
}

func (f *fakeProbes) probes(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[addr]
}

// TestDNSMembersAreResolvedAgain: a dns: member list is the name's
// addresses with the port, this replica always among them, looked up again
// every Refresh; a failed lookup keeps the last members, and a member that
// leaves takes its gauge series with it.
func TestDNSMembersAreResolvedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := &fakeResolver{name: "peers.cacheyd.svc", answer: []string{"10.0.0.2", "10.0.0.3"}}
		m := metrics.New(nil)
		o, err := newOrigin(Config{Peers: []string{"dns:peers.cacheyd.svc:30123"}, Advertise: "10.0.0.1:30123", Secret: testSecret,
			Resolver: res, Metrics: m, Logger: quiet()}, newFakeProbes().probe)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		synctest.Wait() // the new members' probes
		want := []string{"10.0.0.1:30123", "10.0.0.2:30123", "10.0.0.3:30123"}
		if got := o.Members(); !slices.Equal(got, want) {
			t.Fatalf("members at start = %v, want %v (self included before DNS lists it)", got, want)
		}
		if n := testutil.ToFloat64(m.ClusterMembers); n != 3 {
			t.Errorf("cacheyd_cluster_members = %v, want 3", n)
		}

		res.set([]string{"10.0.0.1", "10.0.0.3", "fd00::4"}, nil)
		time.Sleep(5 * time.Second) // the default refresh, on the bubble's clock
		synctest.Wait()
		want = []string{"10.0.0.1:30123", "10.0.0.3:30123", "[fd00::4]:30123"}
		if got := o.Members(); !slices.Equal(got, want) {
			t.Fatalf("members after a refresh = %v, want %v", got, want)
		}
		series := skippedSeries(t, m)
		if _, ok := series["10.0.0.2:30123"]; ok || len(series) != 3 {
			t.Errorf("skip gauge series = %v, want exactly the three members", series)
		}

		res.set(nil, errors.New("server misbehaving"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := o.Members(); !slices.Equal(got, want) {
			t.Fatalf("members after a failed lookup = %v, want the last ones %v", got, want)
		}
		res.mu.Lock()
		lookups := res.lookups
		res.mu.Unlock()
		if lookups != 3 {
			t.Errorf("lookups = %d, want 3 (at start and after each refresh)", lookups)
		}
	})
}

// TestMembersAreAdmittedByProof: a member is asked only once its probe
// proved the cluster secret: one that cannot prove it, or never answers,
// is not among Members, never a Route, shown skipped, and probed again
// every Backoff; one that proves it later is admitted then.
func TestMembersAreAdmittedByProof(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeProbes()
		f.set("10.0.0.3:1", errors.New("answer not proven with this cluster's secret"))
		f.hang["10.0.0.4:1"] = true
		// Not listening yet: answers its third probe.
		f.set("10.0.0.5:1", fmt.Errorf("%w: connection refused", errNoAnswer))
		f.after["10.0.0.5:1"] = 2
		m := metrics.New(nil)
		o, err := newOrigin(Config{Peers: []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.5:1"}, Advertise: "10.0.0.1:1",
			Secret: testSecret, Backoff: 10 * time.Second, ProbeTimeout: time.Second, Metrics: m, Logger: quiet()}, f.probe)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if !o.members.usable(t.Context(), "10.0.0.5:1") {
			t.Fatal("a member answering its third first probe is not usable")
		}
		if n := f.probes("10.0.0.5:1"); n != 3 {
			t.Errorf("a member that could not be reached yet was probed %d times before it answered, want 3", n)
		}
		time.Sleep(time.Second) // the hanging member's probe timeout
		synctest.Wait()
		if got, want := o.Members(), []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.5:1"}; !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v: only those that proved the secret", got, want)
		}
		// A key of every owner: none is routed to the refused members.
		for i := range 200 {
			req := keyRequest(i)
			if r := composedOf(o, nil).Route(req); r == "10.0.0.3:1" || r == "10.0.0.4:1" {
				t.Fatalf("key %d routed to %s, which did not prove the secret", i, r)
			}
		}
		series := skippedSeries(t, m)
		if series["10.0.0.2:1"] != 0 || series["10.0.0.3:1"] != 1 || series["10.0.0.4:1"] != 1 {
			t.Errorf("skip gauges %v, want the refused members skipped", series)
		}
		time.Sleep(25 * time.Second)
		synctest.Wait()
		if n := f.probes("10.0.0.3:1"); n != 3 {
			t.Errorf("a refused member probed %d times in 26s, want 3 (at once, then every 10s)", n)
		}
		if n := f.probes("10.0.0.2:1"); n != 1 {
			t.Errorf("an admitted member probed %d times, want once", n)
		}
		f.set("10.0.0.3:1", nil)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got, want := o.Members(), []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.5:1"}; !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v once it proved the secret", got, want)
		}
	})
}

// keyRequest is a request for the i-th of many keys.
func keyRequest(i int) *oci.Request {
	return &oci.Request{Method: "GET", Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app",
		Reference: oci.Reference{Digest: oci.FromBytes([]byte(strconv.Itoa(i)))}}
}

// TestFailedMembersAreProbedAgain: a member that failed a request is
// skipped, its gauge 1, until a probe a backoff later finds it proving the
// secret again; while its probes fail, it stays skipped.
func TestFailedMembersAreProbedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeProbes()
		m := metrics.New(nil)
		o, err := newOrigin(Config{Peers: []string{"10.0.0.1:1", "10.0.0.2:1"}, Advertise: "10.0.0.1:1", Secret: testSecret,
			Backoff: 10 * time.Second, Metrics: m, Logger: quiet()}, f.probe)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		synctest.Wait()
		o.members.fail("10.0.0.2:1")
		if o.members.ready("10.0.0.2:1") || skippedSeries(t, m)["10.0.0.2:1"] != 1 {
			t.Fatalf("a failed member is not skipped: gauge %v", skippedSeries(t, m))
		}
		f.set("10.0.0.2:1", errors.New("connection refused"))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if o.members.ready("10.0.0.2:1") || f.probes("10.0.0.2:1") != 2 {
			t.Fatalf("after a failed probe: ready %v, probes %d; want skipped, 2 probes", o.members.ready("10.0.0.2:1"), f.probes("10.0.0.2:1"))
		}
		f.set("10.0.0.2:1", nil)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if !o.members.ready("10.0.0.2:1") || skippedSeries(t, m)["10.0.0.2:1"] != 0 {
			t.Errorf("after a probe that proved the secret: ready %v, gauge %v", o.members.ready("10.0.0.2:1"), skippedSeries(t, m))
		}
	})
}

// TestDNSAnswersOverTheCapAreBounded: a DNS answer with more than
// MaxMembers addresses is cut to this replica and the lowest addresses,
// the same on every replica, with one error logged per answer over the
// cap.
func TestDNSAnswersOverTheCapAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var answer []string
		for i := range 200 {
			answer = append(answer, fmt.Sprintf("10.0.%d.%d", i/100, i%100+1))
		}
		res := &fakeResolver{name: "peers", answer: answer}
		errs := &errorLog{}
		o, err := newOrigin(Config{Peers: []string{"dns:peers:1"}, Advertise: "10.9.9.9:1", Secret: testSecret,
			Resolver: res, Metrics: metrics.New(nil), Logger: slog.New(errs)}, newFakeProbes().probe)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		synctest.Wait()
		var want []string
		for _, a := range answer {
			want = append(want, a+":1")
		}
		slices.Sort(want)
		want = append(want[:MaxMembers-1], "10.9.9.9:1")
		slices.Sort(want)
		if got := o.members.current(); !slices.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("%d members, first unlike at %d; want %d: this replica and the %d lowest", len(got), i, len(want), MaxMembers-1)
		}
		time.Sleep(5 * time.Second) // the same answer again
		synctest.Wait()
		res.set(answer[1:], nil) // another answer, still over the cap
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := errs.count(); n != 2 {
			t.Errorf("errors logged = %d, want 2: one per answer over the cap", n)
		}
		if got := o.members.current(); len(got) != MaxMembers || !slices.Contains(got, "10.9.9.9:1") {
			t.Errorf("members = %d, want %d with this replica", len(got), MaxMembers)
		}
	})
}

// errorLog counts error records.
type errorLog struct {
	mu sync.Mutex // guards n
	n  int
}

func (e *errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (e *errorLog) WithAttrs([]slog.Attr) slog.Handler           { return e }
func (e *errorLog) WithGroup(string) slog.Handler                { return e }
func (e *errorLog) Handle(context.Context, slog.Record) error {
	e.mu.Lock()
	e.n++
	e.mu.Unlock()
	return nil
}

func (e *errorLog) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}
