package depcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// daemon is the command that ships, in the image and the releases.
const daemon = module + "/cmd/cacheyd"

// shippedPackages are the packages that ship with the daemon: the daemon, and the
// object-storage tier it is built to run with (its modules ship whether or
// not a given build links it yet).
var shippedPackages = []string{daemon, module + "/tier/s3"}

// platforms are those it ships for, built as the Dockerfile and the
// release workflow build it: the packages linked may differ by platform.
var platforms = []string{"linux/amd64", "linux/arm64"}

// notShipped are packages for tests and the benchmark, each with the
// packages below it: the daemon links none of them. cmd/cacheyd-bench
// runs the benchmark so that the daemon need not.
var notShipped = []string{
	module + "/bench",
	module + "/cmd/cacheyd-bench",
	module + "/e2e",
	module + "/internal/containerdtest",
	module + "/internal/loopback",
	module + "/internal/origintest",
	module + "/internal/registrytest",
	module + "/internal/s3test",
	module + "/tier/tiertest",
	"github.com/google/go-containerregistry/pkg/registry",
	"github.com/google/go-containerregistry/pkg/v1/random",
	"github.com/prometheus/client_golang/prometheus/testutil",
	"net/http/httptest",
	"testing",
}

// linked is what one build of a command links: each package's import path
// and its module ("" for the standard library's).
type linked struct {
	packages map[string]string
}

// modules are the third-party modules of l, sorted.
func (l linked) modules() []string {
	var out []string
	for _, m := range l.packages {
		if m != "" && m != module && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// goList lists the packages that patterns link for platform (GOOS/GOARCH)
// without cgo; with test, their tests' too.
func goList(t *testing.T, platform string, test bool, patterns ...string) linked {
	t.Helper()
	goos, goarch, _ := strings.Cut(platform, "/")
	args := []string{"list", "-deps", "-f", "{{.ImportPath}} {{with .Module}}{{.Path}}{{end}}"}
	if test {
		args = append(args, "-test")
	}
	cmd := exec.Command("go", append(args, patterns...)...)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(cmd.Args[1:], " "), err)
	}
	l := linked{packages: map[string]string{}}
	for line := range strings.Lines(string(out)) {
		// The module is last: a test's package has a space in its path
		// ("p [p.test]"), and a standard one no module.
		line = strings.TrimSuffix(line, "\n")
		if i := strings.LastIndexByte(line, ' '); i >= 0 {
			l.packages[line[:i]] = line[i+1:]
		}
	}
	if _, ok := l.packages[module+"/internal/app"]; !ok {
		t.Fatalf("go list %v for %s: no internal/app among %d packages", patterns, platform, len(l.packages))
	}
	return l
}

// readmeModules are the modules README.md's "Dependencies" section names
// in the first column of its two tables: what the daemon ships, and what
// only the tests and cacheyd-bench use.
func readmeModules(t *testing.T) (shipped, testOnly []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Dependencies, and why each\n")
	if !ok {
		t.Fatal(`README.md has no "## Dependencies, and why each" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var tables [][]string
	inTable := false
	code := regexp.MustCompile("`([^`]+)`")
	for line := range strings.Lines(section) {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 3 {
			inTable = false
			continue
		}
		if !inTable {
			tables, inTable = append(tables, nil), true
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			if strings.Contains(m[1], ".") && strings.Contains(m[1], "/") {
				tables[len(tables)-1] = append(tables[len(tables)-1], m[1])
			}
		}
	}
	if len(tables) != 2 {
		t.Fatalf("README.md's dependencies: %d tables, want two (shipped, then only in tests and cacheyd-bench)", len(tables))
	}
	return tables[0], tables[1]
}

// TestTheDaemonShipsNoBenchmarkOrTestCode: cacheyd links neither the
// benchmark, nor the in-process registries and fakes of the tests, nor a
// module only the tests and the benchmark use.
func TestTheDaemonShipsNoBenchmarkOrTestCode(t *testing.T) {
	_, testOnly := readmeModules(t)
	for _, platform := range platforms {
		var pkgs, mods []string
		for path, mod := range goList(t, platform, false, daemon).packages {
			for _, n := range notShipped {
				if path == n || strings.HasPrefix(path, n+"/") {
					pkgs = append(pkgs, path)
				}
			}
			if slices.Contains(testOnly, mod) && !slices.Contains(mods, mod) {
				mods = append(mods, mod)
			}
		}
		slices.Sort(pkgs)
		slices.Sort(mods)
		if len(pkgs) > 0 {
			t.Errorf("%s (%s) links what only tests and cacheyd-bench may: %s", daemon, platform, strings.Join(pkgs, ", "))
		}
		if len(mods) > 0 {
			t.Errorf("%s (%s) links modules README.md lists as only in tests and cacheyd-bench: %s", daemon, platform, strings.Join(mods, ", "))
		}
	}
}

// TestREADMENamesEveryModule: README.md's dependency table names exactly
// the modules cacheyd ships, and its second list every other module that
// the tests and cacheyd-bench use.
func TestREADMENamesEveryModule(t *testing.T) {
	shipped, testOnly := readmeModules(t)
	var ships []string
	for _, platform := range platforms {
		for _, m := range goList(t, platform, false, shippedPackages...).modules() {
			if !slices.Contains(ships, m) {
				ships = append(ships, m)
			}
		}
	}
	for _, m := range ships {
		if !slices.Contains(shipped, m) {
			t.Errorf("cacheyd ships %s, which README.md's dependency table does not name (add it, with why)", m)
		}
	}
	for _, m := range shipped {
		if !slices.Contains(ships, m) {
			t.Errorf("README.md's dependency table names %s, which cacheyd does not ship", m)
		}
	}
	for _, m := range goList(t, platforms[0], true, module+"/...").modules() {
		if !slices.Contains(ships, m) && !slices.Contains(testOnly, m) {
			t.Errorf("the tests or cacheyd-bench use %s, which README.md lists nowhere (add it to the modules only in tests)", m)
		}
	}
	for _, m := range testOnly {
		if slices.Contains(shipped, m) {
			t.Errorf("README.md lists %s both as shipped and as only in tests", m)
		}
	}
}
