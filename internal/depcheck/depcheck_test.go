package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cacheyd/cacheyd"

// imports lists, for each package of the module (its path below the
// module), the module's packages it may import directly. A package that is
// not listed fails the test: a new package takes a place in the layering on
// purpose. free means no rule (test support and the command).
var imports = map[string][]string{
	"oci":                     {},
	"metrics":                 {},
	"flight":                  {"oci"},
	"fill":                    {"oci", "flight"},
	"retry":                   {"oci"},
	"tier":                    {"oci"},
	"tier/memory":             {"oci", "metrics", "tier"},
	"tier/disk":               {"oci", "metrics", "tier"},
	"tier/tiertest":           {"oci", "tier"},
	"tier/s3":                 {"oci", "metrics", "tier"},
	"internal/s3test":         {},
	"cache":                   {"oci", "metrics", "flight", "fill", "retry", "tier"},
	"upstream":                {"oci", "metrics"},
	"sources":                 {"oci", "metrics", "tier"},
	"cluster":                 {"oci", "metrics", "sources", "internal/peerauth"},
	"server":                  {"oci", "metrics", "cache", "internal/peerauth"},
	"internal/app":            {"oci", "metrics", "cache", "cluster", "server", "sources", "upstream", "tier", "tier/disk", "tier/memory", "tier/s3", "internal/peerauth"},
	"internal/puller":         {"oci"},
	"internal/warm":           {"oci", "internal/puller"},
	"internal/origintest":     {"oci"},
	"internal/registrytest":   free,
	"internal/containerdtest": {"internal/loopback"},
	"internal/loopback":       {},
	"internal/logtest":        {},
	"internal/node":           {},
	"internal/peerauth":       {"oci"},
	"internal/depcheck":       {},
	"bench":                   {"oci", "cluster", "internal/app", "internal/puller", "internal/registrytest"},
	"e2e":                     free,
	"cmd/internal/daemon":     {"oci", "cache", "cluster", "server", "sources", "upstream", "tier/s3", "internal/app", "internal/peerauth"},
	"cmd/cacheyd":             free,
	"cmd/cacheyd-bench":       free,
}

// free marks a package free of import rules.
var free = []string{"*"}

// only: a third-party module and the packages that may import it, or with
// /* every package below a folder (kong: the commands and what they share;
// minio-go: the object-storage tier, and the test server that makes its
// bucket).
var only = map[string][]string{
	"github.com/valyala/fasthttp":    {"server"},
	"github.com/dgraph-io/ristretto": {"tier/memory"},
	"github.com/alecthomas/kong":     {"cmd/*"},
	"github.com/minio/minio-go":      {"tier/s3", "internal/s3test"},
}

// owns reports whether package name is owner, or below it for owner/*.
func owns(owner, name string) bool {
	if dir, ok := strings.CutSuffix(owner, "/*"); ok {
		return strings.HasPrefix(name, dir+"/")
	}
	return name == owner
}

type pkg struct {
	ImportPath string
	Imports    []string
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
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		allowed, listed := imports[name]
		if !listed {
			t.Errorf("%s has no place in the layering: list what it may import", p.ImportPath)
			continue
		}
		for _, d := range p.Imports {
			for dep, owners := range only {
				if (d == dep || strings.HasPrefix(d, dep+"/")) && !slices.ContainsFunc(owners, func(o string) bool { return owns(o, name) }) {
					t.Errorf("%s imports %s; only %v may", name, d, owners)
				}
			}
			own, ok := strings.CutPrefix(d, module+"/")
			if !ok || slices.Equal(allowed, free) {
				continue
			}
			if !slices.Contains(allowed, own) {
				t.Errorf("%s imports %s; it may import only %v", name, own, allowed)
			}
		}
	}
	if checked < len(imports)-2 {
		t.Fatalf("checked only %d packages", checked)
	}
}
