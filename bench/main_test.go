package bench

import (
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
