package registrytest

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestTagListPages(t *testing.T) {
	reg := New(t, Options{})
	img := reg.SeedImage(t, "org/app", "a", 1, 10)
	for _, tag := range []string{"b", "c", "d", "e"} {
		reg.WriteImage(t, "org/app", tag, img)
	}
	get := func(query string) (tags []string, link string) {
		t.Helper()
		resp, err := reg.Client().Get(reg.URL() + "/v2/org/app/tags/list" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct{ Tags []string }
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil {
			t.Fatalf("GET tags/list%s: %s %s", query, resp.Status, body)
		}
		return list.Tags, resp.Header.Get("Link")
	}
	tests := []struct {
		query    string
		tags     []string
		wantLink string
	}{
		{"", []string{"a", "b", "c", "d", "e"}, ""},
		{"?n=2", []string{"a", "b"}, `</v2/org/app/tags/list?last=b&n=2>; rel="next"`},
		{"?n=2&last=b", []string{"c", "d"}, `</v2/org/app/tags/list?last=d&n=2>; rel="next"`},
		{"?n=2&last=d", []string{"e"}, ""},
		{"?last=bb", []string{"c", "d", "e"}, ""},
		{"?n=5", []string{"a", "b", "c", "d", "e"}, ""},
	}
	for _, tt := range tests {
		tags, link := get(tt.query)
		if diff := cmp.Diff(tt.tags, tags); diff != "" || link != tt.wantLink {
			t.Errorf("tags/list%s = %v, Link %q; want %v, %q", tt.query, tags, link, tt.tags, tt.wantLink)
		}
	}
	// go-containerregistry's client follows the Links to the end.
	all, err := remote.List(ref(t, reg, "org/app:a").Context(), append(pullOptions(t, reg, nil), remote.WithPageSize(2))...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "d", "e"}, all); diff != "" {
		t.Errorf("remote.List (-want +got):\n%s", diff)
	}
	if n := reg.Count("GET", KindTags, ""); n != len(tests)+3 {
		t.Errorf("registry counted %d tag list GETs, want %d", n, len(tests)+3)
	}
}

func TestReferrersFiltered(t *testing.T) {
	reg := New(t, Options{})
	img := reg.SeedImage(t, "app", "v1", 1, 10)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	raw, _ := img.RawManifest()
	subject := v1.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(raw))}
	sig := reg.SeedReferrer(t, "app", subject, "application/vnd.example.sig")
	sbom := reg.SeedReferrer(t, "app", subject, "application/vnd.example.sbom")

	get := func(query string) (v1.IndexManifest, http.Header) {
		t.Helper()
		resp, err := reg.Client().Get(reg.URL() + "/v2/app/referrers/" + d.String() + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var idx v1.IndexManifest
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &idx) != nil {
			t.Fatalf("GET referrers%s: %s %s", query, resp.Status, body)
		}
		return idx, resp.Header
	}
	digests := func(idx v1.IndexManifest) []v1.Hash {
		var out []v1.Hash
		for _, m := range idx.Manifests {
			out = append(out, m.Digest)
		}
		return out
	}
	idx, h := get("")
	want := []v1.Hash{sig, sbom}
	if sbom.String() < sig.String() {
		want = []v1.Hash{sbom, sig}
	}
	if diff := cmp.Diff(want, digests(idx)); diff != "" || h.Get("OCI-Filters-Applied") != "" || h.Get("Content-Type") != string(types.OCIImageIndex) {
		t.Errorf("referrers: %v, headers %v; want %v, no filters", digests(idx), h, want)
	}
	idx, h = get("?artifactType=application/vnd.example.sbom")
	if diff := cmp.Diff([]v1.Hash{sbom}, digests(idx)); diff != "" || h.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("filtered referrers: %v, OCI-Filters-Applied %q; want [%v], artifactType", digests(idx), h.Get("OCI-Filters-Applied"), sbom)
	}
	if n := reg.Count("GET", KindReferrers, d.String()); n != 2 {
		t.Errorf("registry counted %d referrers GETs, want 2", n)
	}
}

func TestTagPageDefault(t *testing.T) {
	reg := New(t, Options{TagPage: 2})
	img := reg.SeedImage(t, "app", "a", 1, 10)
	for _, tag := range []string{"b", "c"} {
		reg.WriteImage(t, "app", tag, img)
	}
	resp, err := reg.Client().Get(reg.URL() + "/v2/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Tags []string }
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || !slices.Equal(list.Tags, []string{"a", "b"}) || resp.Header.Get("Link") != `</v2/app/tags/list?last=b&n=2>; rel="next"` {
		t.Errorf("first page without n: %v, Link %q, %v; want [a b] and a Link to the next", list.Tags, resp.Header.Get("Link"), err)
	}
}
