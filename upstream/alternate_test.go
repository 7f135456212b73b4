package upstream

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

func TestAlternateURLs(t *testing.T) {
	for _, tt := range []struct {
		url    string
		prefix string // "" and ok, or "!" for a refusal
	}{
		{"http://127.0.0.1:5000", ""},
		{"https://mirror.gcr.io/", ""},
		{"https://public.ecr.aws/docker", "docker"},
		{"https://mirror.example/a/b/", "a/b"},
		{"ftp://mirror.example", "!"},
		{"https://", "!"},
		{"https://user:pw@mirror.example", "!"},
		{"https://mirror.example?x=1", "!"},
		{"https://mirror.example/#top", "!"},
		{"https://mirror.example/Upper", "!"},
		{"https://mirror.example/a//b", "!"},
		{"mirror.example", "!"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			a, err := NewAlternate(Config{Resolver: loopbackResolver, Metrics: metrics.New(prometheus.NewRegistry())}, tt.url)
			switch {
			case tt.prefix == "!" && err == nil:
				t.Errorf("accepted, prefix %q", a.prefix)
			case tt.prefix != "!" && err != nil:
				t.Errorf("refused: %v", err)
			case err == nil && a.prefix != tt.prefix:
				t.Errorf("prefix %q, want %q", a.prefix, tt.prefix)
			}
		})
	}
}

// TestAlternateFetchesUnderItsPrefix: a request of the registry an
// alternate stands in for goes to the alternate, its repository under the
// alternate's prefix, with the alternate's own token; a redirect of the
// alternate is held to the address policy (its blob store is dialled only
// when allowed, as any registry's).
func TestAlternateFetchesUnderItsPrefix(t *testing.T) {
	for _, tt := range []struct {
		name    string
		allowed bool // the alternate's blob store is allowed
	}{
		{"redirect allowed", true},
		{"redirect to a private address refused", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			alt := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
			content := bytes.Repeat([]byte("layer "), 1000)
			alt.SeedBlob(t, "mirror/team/app", content)
			alt.Reset()
			cfg := Config{Resolver: loopbackResolver, Metrics: metrics.New(prometheus.NewRegistry())}
			if tt.allowed {
				cfg.AllowedHosts = []string{alt.CDNHost()}
			}
			a, err := NewAlternate(cfg, alt.URL()+"/mirror")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := a.Fetch(t.Context(), blobRequest(http.MethodGet, content))
			if !tt.allowed {
				if err == nil {
					resp.Body.Close()
					t.Fatal("fetched through a redirect to an address nobody allowed")
				}
				if n := alt.Count("", registrytest.KindCDN, ""); n != 0 {
					t.Errorf("the blob store got %d requests, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, resp); got != string(content) {
				t.Errorf("read %d bytes, want the %d of the blob", len(got), len(content))
			}
			if n := alt.CountMatch(func(q registrytest.Request) bool {
				return q.Kind == registrytest.KindBlob && q.Name == "mirror/team/app" && q.Ref == string(oci.FromBytes(content))
			}); n != 1 {
				t.Errorf("the alternate got %d requests for mirror/team/app's blob, want 1", n)
			}
			if n := alt.Count(http.MethodGet, registrytest.KindToken, ""); n != 1 {
				t.Errorf("the alternate's realm got %d token requests, want 1", n)
			}
		})
	}
}
