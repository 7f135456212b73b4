package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cacheyd/cacheyd/internal/s3test"
)

// TestQuickRestart: three replicas keep the quick set in a bucket of a real
// S3 server on loopback, started by the run (versitygw) or named by its
// endpoint. The cold burst costs upstream the set once and one pull per
// distinct manifest; after every replica stopped and its disk was wiped,
// the new replicas' burst costs upstream no byte and no pull, and so does
// the warm burst on them; every node of every burst gets every object.
func TestQuickRestart(t *testing.T) {
	bin := s3test.Bin(t)
	for _, c := range []struct {
		name   string
		bucket func(t *testing.T) (Bucket, *s3test.Server)
	}{
		{"versitygw started by the run", func(*testing.T) (Bucket, *s3test.Server) {
			return Bucket{Versitygw: bin}, nil
		}},
		{"endpoint", func(t *testing.T) (Bucket, *s3test.Server) {
			srv := s3test.Start(t)
			return Bucket{Endpoint: srv.Endpoint, Name: s3test.Bucket, Region: s3test.Region,
				AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}, srv
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := QuickConfig()
			cfg.Latency, cfg.Bandwidth = time.Millisecond, 0 // correctness only
			cfg.Dir, cfg.Replicas = t.TempDir(), 3
			cfg.Nodes, cfg.Scenarios = []int{8}, []Scenario{Restart}
			var srv *s3test.Server
			cfg.Bucket, srv = c.bucket(t)
			rep, out := mustRun(t, cfg)
			checkRestart(t, rep, out, 8)
			if srv == nil {
				return
			}
			// Every object of the set is in the bucket once, under the
			// run's prefix and the burst size's.
			objects := 0
			for o := range srv.Client.ListObjects(t.Context(), s3test.Bucket, minio.ListObjectsOptions{Recursive: true}) {
				if o.Err != nil {
					t.Fatal(o.Err)
				}
				if !strings.HasPrefix(o.Key, "cacheyd-bench-") || !strings.Contains(o.Key, "/8/blobs/sha256/") {
					t.Errorf("object %s: want it under cacheyd-bench-<run>/8/blobs/sha256/", o.Key)
				}
				objects++
			}
			if want := rep.Setup.Manifests + rep.Setup.Blobs; objects != want {
				t.Errorf("%d objects in the bucket, want %d (the set's manifests and blobs)", objects, want)
			}
		})
	}
}

// checkRestart checks the restart scenario of a run of n nodes.
func checkRestart(t *testing.T, rep *Report, out string, n int) {
	t.Helper()
	s := rep.Setup
	if s.Replicas != 3 || s.Bucket == "" || len(rep.Results) != 3 {
		t.Fatalf("setup %+v with %d results: want 3 replicas, a bucket, 3 results", s, len(rep.Results))
	}
	for i, want := range []struct {
		phase string
		bytes int64
		pulls int
	}{
		{PhaseCold, s.Bytes, s.Manifests},
		{PhaseWiped, 0, 0},
		{PhaseWarm, 0, 0},
	} {
		r := rep.Results[i]
		if r.Scenario != Restart || r.Phase != want.phase {
			t.Fatalf("result %d: %s/%s, want restart/%s", i, r.Scenario, r.Phase, want.phase)
		}
		if r.OK != n || r.UpstreamBytes != want.bytes || r.UpstreamPulls != want.pulls || r.Upstream429 != 0 {
			t.Errorf("%s: ok %d, upstream %d bytes, %d pulls, %d 429s; want %d ok, %d bytes, %d pulls, none",
				r.Phase, r.OK, r.UpstreamBytes, r.UpstreamPulls, r.Upstream429, n, want.bytes, want.pulls)
		}
		if r.BytesServed != int64(n)*s.Bytes {
			t.Errorf("%s: served %d bytes, want %d", r.Phase, r.BytesServed, int64(n)*s.Bytes)
		}
	}
	if len(rep.Restarts) != 1 || !rep.Restarts[0].Pass || rep.Restarts[0].Nodes != n || rep.Check() != nil {
		t.Errorf("restart checks %+v, Check %v: want one passed for %d nodes", rep.Restarts, rep.Check(), n)
	}
	for _, want := range []string{"restart/cold", "restart/wiped", "restart/warm", "bucket: ", "OK restart ×" + itoa(n)} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// A wiped burst that asked upstream for anything, or whose nodes failed,
// fails the check, and the report says FAIL.
func TestRestartCheck(t *testing.T) {
	warm := Result{Scenario: Restart, Phase: PhaseWarm, Nodes: 4, OK: 4, NodeSeconds: Percentiles{Max: 2, N: 4}}
	for _, c := range []struct {
		name  string
		wiped Result
		pass  bool
	}{
		{"nothing upstream", Result{OK: 4}, true},
		{"bytes upstream", Result{OK: 4, UpstreamBytes: 1}, false},
		{"a pull upstream", Result{OK: 4, UpstreamPulls: 1}, false},
		{"a node failed", Result{OK: 3}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := c.wiped
			w.Scenario, w.Phase, w.Nodes, w.NodeSeconds = Restart, PhaseWiped, 4, Percentiles{Max: 3, N: w.OK}
			cold := Result{Scenario: Restart, Phase: PhaseCold, Nodes: 4, OK: 4, UpstreamBytes: 100, UpstreamPulls: 5}
			rep := &Report{Results: []Result{cold, w, warm}}
			rep.Restarts = restartChecks(rep.Results)
			if len(rep.Restarts) != 1 {
				t.Fatalf("%d checks, want 1", len(rep.Restarts))
			}
			got := rep.Restarts[0]
			if got.Pass != c.pass || got.Ratio != 1.5 || got.WarmSeconds != 2 || got.WipedSeconds != 3 {
				t.Errorf("check %+v: want pass %v, 3s against 2s warm, ratio 1.5", got, c.pass)
			}
			if (rep.Check() == nil) != c.pass {
				t.Errorf("Check: %v, want pass %v", rep.Check(), c.pass)
			}
			var out strings.Builder
			if err := rep.WriteTable(&out); err != nil {
				t.Fatal(err)
			}
			if verdict := map[bool]string{true: "OK restart ×4", false: "FAIL restart ×4"}[c.pass]; !strings.Contains(out.String(), verdict) {
				t.Errorf("table lacks %q:\n%s", verdict, out.String())
			}
		})
	}
}

func TestRestartNeedsABucket(t *testing.T) {
	for _, c := range []struct {
		name   string
		bucket Bucket
		target string
	}{
		{"no bucket", Bucket{}, ""},
		{"a target", Bucket{Versitygw: "versitygw"}, "http://127.0.0.1:30123"},
		{"an endpoint and a versitygw", Bucket{Endpoint: "http://127.0.0.1:9000", Name: "b", Versitygw: "versitygw"}, ""},
		{"an endpoint without a bucket", Bucket{Endpoint: "http://127.0.0.1:9000"}, ""},
		{"an endpoint that is no URL", Bucket{Endpoint: "127.0.0.1:9000", Name: "b"}, ""},
		{"a key without its secret", Bucket{Endpoint: "http://127.0.0.1:9000", Name: "b", AccessKey: "k"}, ""},
	} {
		cfg := QuickConfig()
		cfg.Scenarios, cfg.Bucket, cfg.Target = []Scenario{Restart}, c.bucket, c.target
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	cfg := QuickConfig()
	cfg.Scenarios, cfg.Bucket = []Scenario{Cold, Restart}, Bucket{Endpoint: "http://127.0.0.1:9000", Name: "b"}
	if c, err := cfg.withDefaults(); err != nil || len(c.Scenarios) != 2 || c.Scenarios[1] != Restart {
		t.Errorf("cold and restart with an endpoint: %v, scenarios %v", err, c.Scenarios)
	}
}
