package deploytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestDocsSnippets: the configuration a reader copies from docs/ parses,
// and every hosts.toml shown either has a [host] table or is the
// documented mirror-only form (a server line alone).
func TestDocsSnippets(t *testing.T) {
	fence := regexp.MustCompile("(?s)```(toml|json)\n(.*?)```")
	n := 0
	for _, name := range []string{"containerd.md", "kubernetes.md", "warm.md", "metrics.md", "storage.md"} {
		src, err := os.ReadFile(filepath.Join(repoRoot, "docs", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fence.FindAllStringSubmatch(string(src), -1) {
			n++
			lang, body := m[1], dedent(m[2])
			if lang == "json" {
				if !json.Valid([]byte(body)) {
					t.Errorf("%s: JSON snippet does not parse:\n%s", name, body)
				}
				continue
			}
			var doc map[string]any
			if _, err := toml.Decode(body, &doc); err != nil {
				t.Errorf("%s: TOML snippet does not parse: %v\n%s", name, err, body)
				continue
			}
			if _, isHosts := doc["server"]; !isHosts && doc["host"] == nil {
				continue // not a hosts.toml (config.toml, registries.conf, Bottlerocket)
			}
			hosts, _ := doc["host"].(map[string]any)
			for url, h := range hosts {
				caps, _ := h.(map[string]any)["capabilities"].([]any)
				if !strings.HasPrefix(url, "http://") || len(caps) == 0 {
					t.Errorf("%s: [host.%q] has no capabilities or is not http://", name, url)
				}
			}
			if len(hosts) == 0 && len(doc) != 1 {
				t.Errorf("%s: a hosts.toml with neither a [host] table nor only a server line:\n%s", name, body)
			}
		}
	}
	if n < 7 {
		t.Errorf("found only %d TOML and JSON snippets in docs/", n)
	}
}

// dedent removes the indentation of a snippet inside a list item.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if k := len(l) - len(strings.TrimLeft(l, " ")); indent < 0 || k < indent {
			indent = k
		}
	}
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}
