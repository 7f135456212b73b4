package upstream

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies proves the layering: upstream reaches none of the
// packages that belong to other layers, not even through a dependency.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/cacheyd/cacheyd/tier",
		"github.com/cacheyd/cacheyd/server",
		"github.com/cacheyd/cacheyd/cmd",
		"github.com/valyala/fasthttp",
		"github.com/dgraph-io/ristretto",
		"github.com/alecthomas/kong",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("upstream depends on %s", dep)
			}
		}
	}
}
