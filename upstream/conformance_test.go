package upstream

import (
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
	reg.SeedManifest(t, h.Repository, h.Tag, h.Manifest, h.MediaType)
	switch h.Behaviour {
	case origintest.Cuts:
		reg.SetHook(registrytest.Truncate(reg.BlobBytes(""), h.After))
	case origintest.Hangs:
		// Released when the registry closes, at the test's end.
		reg.SetHook(registrytest.HoldAfter(reg.BlobBytes(""), h.After, make(chan struct{})))
	}
	return newClient(t, Config{RegistryURLs: map[string]string{h.Registry: reg.URL()}, AllowedHosts: []string{reg.CDNHost()}})
}
