package bench

import (
	"bytes"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a run leaves a goroutine behind: every fake
// upstream server, in-process cacheyd, node connection and progress
// goroutine must end with the run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's clock for the Date header: one per process, by design.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// The idle-worker cleaner of each fasthttp.Server: it notices Stop
		// only after its sleep (up to 10s) ends.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// mustRun runs cfg, failing the test with what the run printed if it
// fails, and logs the report; it returns the report and that text.
func mustRun(t *testing.T, cfg Config) (*Report, string) {
	t.Helper()
	var out bytes.Buffer
	rep, err := Run(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	return rep, out.String()
}
