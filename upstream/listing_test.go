package upstream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// Listings (tag lists, referrers) against the fake registry: fetched as
// cacheyd through the token flow, one page at a time, with the registry's
// headers that matter.

func listRequest(kind oci.Kind, repo string, ref oci.Reference, q oci.ListQuery) *oci.Request {
	return &oci.Request{Method: "GET", Kind: kind, Registry: testRegistry, Repository: repo, Reference: ref, List: q}
}

func TestFetchTagListPages(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true}, Config{})
	img := reg.SeedImage(t, "team/app", "a", 1, 100)
	for _, tag := range []string{"b", "c"} {
		reg.WriteImage(t, "team/app", tag, img)
	}
	tests := []struct {
		q        oci.ListQuery
		tags     []string
		wantLink string
	}{
		{oci.ListQuery{}, []string{"a", "b", "c"}, ""},
		{oci.ListQuery{N: "2"}, []string{"a", "b"}, `</v2/team/app/tags/list?last=b&n=2>; rel="next"`},
		{oci.ListQuery{N: "2", Last: "b"}, []string{"c"}, ""},
	}
	for _, tt := range tests {
		reg.Reset()
		resp, err := c.Fetch(t.Context(), listRequest(oci.KindTags, "team/app", oci.Reference{}, tt.q))
		if err != nil {
			t.Fatalf("tags %+v: %v", tt.q, err)
		}
		var list struct {
			Name string
			Tags []string
		}
		if err := json.Unmarshal([]byte(readBody(t, resp)), &list); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.tags, list.Tags); diff != "" || resp.Link != tt.wantLink || resp.MediaType != "application/json" {
			t.Errorf("tags %+v = %v, Link %q, type %q; want %v, %q, application/json", tt.q, list.Tags, resp.Link, resp.MediaType, tt.tags, tt.wantLink)
		}
		var sent []registrytest.Request
		for _, r := range reg.Requests() {
			if r.Kind == registrytest.KindTags {
				sent = append(sent, r)
			}
		}
		if len(sent) != 1 || sent[0].Query != tt.q.Encode() || sent[0].Accept != "application/json" || !strings.HasPrefix(sent[0].Authorization, "Bearer ") {
			t.Errorf("tags %+v: registry got %+v, want one GET with query %q, Accept application/json and a token", tt.q, sent, tt.q.Encode())
		}
	}
}

func TestFetchReferrers(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true}, Config{})
	img := reg.SeedImage(t, "team/app", "v1", 1, 100)
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	m, _ := img.Manifest()
	sig := reg.SeedReferrer(t, "team/app", v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(raw))}, "application/vnd.example.sig")
	reg.SeedReferrer(t, "team/app", v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(raw))}, "application/vnd.example.sbom")

	ref := oci.Reference{Digest: oci.Digest(d.String())}
	resp, err := c.Fetch(t.Context(), listRequest(oci.KindReferrers, "team/app", ref, oci.ListQuery{ArtifactType: "application/vnd.example.sig"}))
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal([]byte(readBody(t, resp)), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig {
		t.Errorf("filtered referrers = %+v, want only %s", idx.Manifests, sig)
	}
	if resp.FiltersApplied != "artifactType" || resp.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("FiltersApplied %q, MediaType %q; want artifactType and the OCI index type", resp.FiltersApplied, resp.MediaType)
	}
	if n := reg.CountMatch(func(r registrytest.Request) bool {
		return r.Kind == registrytest.KindReferrers && r.Accept == "application/vnd.oci.image.index.v1+json" &&
			r.Query == "artifactType=application%2Fvnd.example.sig"
	}); n != 1 {
		t.Errorf("registry got %d referrers GETs with the index Accept and the filter, want 1:%v", n, reg.Requests())
	}
}

func TestFetchReferrersUnsupported(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{NoReferrers: true}, Config{})
	img := reg.SeedImage(t, "team/app", "v1", 1, 100)
	d, _ := img.Digest()
	_, err := c.Fetch(t.Context(), listRequest(oci.KindReferrers, "team/app", oci.Reference{Digest: oci.Digest(d.String())}, oci.ListQuery{}))
	e, ok := oci.AsError(err)
	if !ok || e.Status != http.StatusNotFound || len(e.Body) == 0 {
		t.Fatalf("referrers of a registry without the API: %v, want its own 404 with its body", err)
	}
}

func TestFetchPrivateTagList(t *testing.T) {
	reg, c := fakeRegistry(t, registrytest.Options{Token: true, Users: map[string]string{"alice": "pw"},
		Private: map[string][]string{"team/secret": {"alice"}}}, Config{})
	reg.SeedImage(t, "team/secret", "v1", 1, 100)
	req := listRequest(oci.KindTags, "team/secret", oci.Reference{}, oci.ListQuery{})
	_, err := c.Fetch(t.Context(), req)
	e, ok := oci.AsError(err)
	if !ok || e.Status != http.StatusUnauthorized || !strings.Contains(e.Challenge, "repository:team/secret:pull") {
		t.Fatalf("private tag list as cacheyd: %v, want the registry's 401 and its challenge", err)
	}
	req.Authorization = "Bearer " + clientToken(t, reg, "team/secret", "alice", "pw")
	resp, err := c.Fetch(t.Context(), req)
	if err != nil {
		t.Fatalf("private tag list with the client's token: %v", err)
	}
	if body := readBody(t, resp); !strings.Contains(body, `"v1"`) {
		t.Errorf("private tag list = %s, want v1 in it", body)
	}
}

func TestListingSizeBound(t *testing.T) {
	big := oci.MaxListingSize + 1
	c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("last") == "announced" {
			w.Header().Set("Content-Length", fmt.Sprint(big))
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(strings.Repeat(" ", big)))
	})
	// Announced too large: refused before reading.
	_, err := c.Fetch(t.Context(), listRequest(oci.KindTags, "team/app", oci.Reference{}, oci.ListQuery{Last: "announced"}))
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("a tag list announced at %d bytes: %v, want 413", big, err)
	}
	// Chunked: the body fails once it passes the bound.
	resp, err := c.Fetch(t.Context(), listRequest(oci.KindTags, "team/app", oci.Reference{}, oci.ListQuery{}))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if e, ok := oci.AsError(err); !ok || e.Status != http.StatusRequestEntityTooLarge || n != oci.MaxListingSize {
		t.Errorf("a chunked tag list of %d bytes: read %d, %v; want %d bytes, then 413", big, n, err, oci.MaxListingSize)
	}
}
