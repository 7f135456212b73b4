package upstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestClientConforms: the client over a registry that demands tokens like
// Docker Hub and redirects blob GETs to a CDN answers as every origin does.
func TestClientConforms(t *testing.T) {
	origintest.Conformance(t, origintest.Suite{New: conformingClient})
}

// conformingClient is a client of a registry holding h: cacheyd is refused
// a private repository with the registry's challenge; a cut or a hang is
// the CDN's, in the middle of a blob's bytes.
func conformingClient(t *testing.T, h origintest.Holding) origintest.Fetcher {
	opts := registrytest.Options{Token: true, Redirect: true, Users: map[string]string{"seeder": "seeds"}}
	if h.Behaviour == origintest.Refuses {
		opts.Private = map[string][]string{h.Repository: {"seeder"}}
	}
	reg := registrytest.New(t, opts)
	for _, b := range h.Blobs {
		reg.SeedBlob(t, h.Repository, b)
	}
	putManifest(t, reg, h)
	switch h.Behaviour {
	case origintest.Cuts:
		reg.SetHook(registrytest.Truncate(reg.BlobBytes(""), h.After))
	case origintest.Hangs:
		// Released when the registry closes, at the test's end.
		reg.SetHook(registrytest.HoldAfter(reg.BlobBytes(""), h.After, make(chan struct{})))
	}
	return newClient(t, Config{RegistryURLs: map[string]string{h.Registry: reg.URL()}, AllowedHosts: []string{reg.CDNHost()}})
}

// putManifest pushes h's manifest under its tag as the seeding user.
func putManifest(t *testing.T, reg *registrytest.Registry, h origintest.Holding) {
	t.Helper()
	q := url.Values{"scope": {"repository:" + h.Repository + ":pull,push"}, "service": {"registrytest"}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+"/token?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("seeder", "seeds")
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.Token == "" {
		t.Fatalf("push token: %s, %v", resp.Status, err)
	}
	req, err = http.NewRequestWithContext(t.Context(), http.MethodPut, reg.URL()+"/v2/"+h.Repository+"/manifests/"+h.Tag, bytes.NewReader(h.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", h.MediaType)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	if resp, err = reg.Client().Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest: %s", resp.Status)
	}
}
