package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
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

// TestDNSMembersAreResolvedAgain: a dns: member list is the name's
// addresses with the port, this replica always among them, looked up again
// every Refresh; a failed lookup keeps the last members, and a member that
// leaves takes its gauge series with it.
func TestDNSMembersAreResolvedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := &fakeResolver{name: "peers.cacheyd.svc", answer: []string{"10.0.0.2", "10.0.0.3"}}
		m := metrics.New(nil)
		o, err := New(Config{Peers: []string{"dns:peers.cacheyd.svc:30123"}, Advertise: "10.0.0.1:30123",
			Resolver: res, Metrics: m, Logger: quiet()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
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

// TestSkipsEndAfterTheBackoff: a failed member is skipped, its gauge is 1,
// and both end once the backoff has passed, without any request asking.
func TestSkipsEndAfterTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := metrics.New(nil)
		o, err := New(Config{Peers: []string{"10.0.0.1:1", "10.0.0.2:1"}, Advertise: "10.0.0.1:1",
			Backoff: 10 * time.Second, Metrics: m, Logger: quiet()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		o.skips.fail("10.0.0.2:1")
		if !o.skips.skipped("10.0.0.2:1") || skippedSeries(t, m)["10.0.0.2:1"] != 1 {
			t.Fatalf("a failed member is not skipped: gauge %v", skippedSeries(t, m))
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := skippedSeries(t, m)["10.0.0.2:1"]; got != 0 {
			t.Errorf("skip gauge after the backoff = %v, want 0", got)
		}
		if o.skips.skipped("10.0.0.2:1") {
			t.Error("still skipped after the backoff")
		}
	})
}
