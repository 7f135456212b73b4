package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// getJSON GETs base+target and decodes the answer into v; it returns the
// response (body read and closed).
func getJSON(t *testing.T, base, target string, v any) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", target, err, body)
		}
	}
	return resp
}

// TestTagListPagesThroughCacheyd: a client paging a tag list through
// cacheyd follows the Links it gets to the end, by ns and by path prefix,
// and gets every tag the registry holds; the pages come from the registry
// once each, then from cacheyd's listing table.
func TestTagListPagesThroughCacheyd(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	img := up.SeedImage(t, "team/app", "v1", 1, 1000)
	for _, tag := range []string{"v2", "v3", "v4", "v5"} {
		up.WriteImage(t, "team/app", tag, img)
	}
	up.Reset()
	flags := serveFlags{
		Listen: "127.0.0.1:0", CacheDir: t.TempDir(), DefaultRegistry: "docker.io", ShutdownTimeout: testShutdown,
		LogLevel: "info", LogFormat: "text", RegistryURL: map[string]string{up.Host(): up.URL()}, AllowRegistry: []string{up.CDNHost()},
		TagTTL: time.Minute,
	}
	base, stop, err := startFlags(t, flags)
	if err != nil {
		t.Fatalf("cacheyd did not start: %v", err)
	}
	t.Cleanup(func() { _ = stop() })

	for _, first := range []string{
		"/v2/team/app/tags/list?n=2&ns=" + url.QueryEscape(up.Host()),
		"/v2/" + up.Host() + "/team/app/tags/list?n=2",
	} {
		for round := range 2 {
			var all []string
			target, pages := first, 0
			for target != "" && pages < 10 {
				var list struct{ Tags []string }
				resp := getJSON(t, base, target, &list)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %s", target, resp.Status)
				}
				all = append(all, list.Tags...)
				pages++
				target = ""
				if link := resp.Header.Get("Link"); link != "" {
					u, _, _ := strings.Cut(strings.TrimPrefix(link, "<"), ">")
					target = u
				}
			}
			if diff := cmp.Diff([]string{"v1", "v2", "v3", "v4", "v5"}, all); diff != "" || pages != 3 {
				t.Errorf("%s, round %d: %d pages (-want +got):\n%s", first, round, pages, diff)
			}
		}
	}
	// Both routes name the same registry and pages: 3 upstream GETs in all.
	if n := up.Count("GET", registrytest.KindTags, ""); n != 3 {
		t.Errorf("upstream saw %d tag list GETs, want 3:%v", n, up.Requests())
	}
}

// TestReferrersThroughCacheyd: referrers come through with the registry's
// filter; a registry without the referrers API gets its 404 passed on.
func TestReferrersThroughCacheyd(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true})
	bare := registrytest.New(t, registrytest.Options{NoReferrers: true})
	img := up.SeedImage(t, "team/app", "v1", 1, 1000)
	bare.WriteImage(t, "team/app", "v1", img)
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	m, _ := img.Manifest()
	subject := v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(raw))}
	sig := up.SeedReferrer(t, "team/app", subject, "application/vnd.example.sig")
	up.SeedReferrer(t, "team/app", subject, "application/vnd.example.sbom")
	base := startCacheydWith(t, t.TempDir(), map[string]string{up.Host(): up.URL(), bare.Host(): bare.URL()})

	var idx v1.IndexManifest
	resp := getJSON(t, base, "/v2/team/app/referrers/"+d.String()+"?artifactType=application/vnd.example.sig&ns="+up.Host(), &idx)
	if resp.StatusCode != http.StatusOK || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig ||
		resp.Header.Get("OCI-Filters-Applied") != "artifactType" || resp.Header.Get("OCI-Namespace") != up.Host() {
		t.Errorf("filtered referrers: %s %v %+v; want only %s, filtered, namespaced", resp.Status, resp.Header, idx.Manifests, sig)
	}
	resp = getJSON(t, base, "/v2/team/app/referrers/"+d.String()+"?ns="+bare.Host(), &idx)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("referrers of a registry without the API: %s, want its 404", resp.Status)
	}
}
