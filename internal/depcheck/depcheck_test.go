package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cacheyd/cacheyd"

// rules: an import (prefix) → the only packages (prefixes) that may import
// it directly. Test files are not checked.
var rules = []struct {
	dep     string
	allowed []string
}{
	{"github.com/valyala/fasthttp", []string{module + "/server", module + "/cmd/", module + "/bench"}},
	{"github.com/dgraph-io/ristretto", []string{module + "/tier", module + "/cmd/", module + "/bench"}},
	{"github.com/alecthomas/kong", []string{module + "/cmd/"}},
	{module + "/upstream", []string{module + "/upstream", module + "/cmd/", module + "/bench"}},
	{module + "/tier", []string{module + "/tier", module + "/server", module + "/cmd/", module + "/bench"}},
	{module + "/server", []string{module + "/server", module + "/cmd/", module + "/bench"}},
	{module + "/bench", []string{module + "/bench", module + "/cmd/"}},
}

// leaves may import no cacheyd package but other leaves.
var leaves = map[string]bool{module + "/oci": true, module + "/metrics": true}

// apart: neither of these may depend on the other, even indirectly.
var apart = [2]string{module + "/tier", module + "/upstream"}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		checked++
		for i, a := range apart {
			if p.ImportPath == a && contains(p.Deps, apart[1-i]) {
				t.Errorf("%s depends on %s", a, apart[1-i])
			}
		}
		for _, d := range p.Imports {
			for _, r := range rules {
				if d != r.dep && !strings.HasPrefix(d, r.dep+"/") {
					continue
				}
				if !hasPrefix(p.ImportPath, r.allowed) {
					t.Errorf("%s depends on %s; only %v may", p.ImportPath, d, r.allowed)
				}
			}
			if leaves[p.ImportPath] && strings.HasPrefix(d, module+"/") && !leaves[d] {
				t.Errorf("leaf %s imports %s", p.ImportPath, d)
			}
		}
	}
	if checked < 6 {
		t.Fatalf("checked only %d packages", checked)
	}
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if s == strings.TrimSuffix(p, "/") || strings.HasPrefix(s, p) || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
