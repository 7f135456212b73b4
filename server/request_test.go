package server

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/oci"
)

func TestParseAccept(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{" , ;q=1"}, nil},
		{[]string{"application/vnd.oci.image.index.v1+json"}, []string{"application/vnd.oci.image.index.v1+json"}},
		{
			[]string{"application/vnd.docker.distribution.manifest.v2+json; q=0.9, Application/VND.OCI.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"},
			[]string{"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"},
		},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseAccept(tt.in)); diff != "" {
			t.Errorf("parseAccept(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	many := make([]string, 100)
	for i := range many {
		many[i] = "type/" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	if got := len(parseAccept(many)); got != maxAcceptTypes {
		t.Errorf("parseAccept kept %d types, want at most %d", got, maxAcceptTypes)
	}
}

// FuzzParseAPI feeds the whole request parse with arbitrary path, ns,
// Accept and Authorization: it must not panic, must refuse with a
// registry's 4xx answer, and must never build a request whose registry is
// not canonical or whose repository breaks the distribution grammar.
func FuzzParseAPI(f *testing.F) {
	seeds := []struct {
		path, ns string
		hasNS    bool
	}{
		{"/v2/alpine/manifests/latest", "", false},
		{"/v2/alpine/manifests/latest", "docker.io", true},
		{"/v2/team.name/app/blobs/" + string(digestA), "registry.example.com", true},
		{"/v2/ghcr.io/org/app/manifests/v1", "", false},
		{"/v2/docker.io/" + string(make([]byte, 250)) + "/manifests/x", "", false},
		{"/v2/a/b/blobs/uploads/x", "", false},
		{"/v2/../x/manifests/y", "[::1]:5000", true},
		{"/v2/_catalog", "", false},
	}
	for _, s := range seeds {
		f.Add(s.path, s.ns, s.hasNS, "application/json;q=1, */*", "Bearer x")
	}
	f.Fuzz(func(t *testing.T, path, ns string, hasNS bool, accept, auth string) {
		in := &incoming{method: http.MethodGet, path: path, ns: ns, hasNS: hasNS, accept: []string{accept}, authorization: auth}
		ar, err := parseAPI(in, oci.DockerHub)
		if err != nil {
			e, ok := oci.AsError(err)
			if !ok || e.Status < 400 || e.Status > 499 || e.Code == "" {
				t.Fatalf("parseAPI(%q): error %v is not a 4xx registry answer", path, err)
			}
			return
		}
		if k := ar.path.Kind; k != oci.KindManifest && k != oci.KindBlob {
			return
		}
		req := ar.req
		if !oci.ValidName(req.Repository) {
			t.Fatalf("parseAPI(%q, ns %q): repository %q fails the grammar", path, ns, req.Repository)
		}
		if canon, err := oci.NormalizeRegistry(req.Registry); err != nil || canon != req.Registry {
			t.Fatalf("parseAPI(%q, ns %q): registry %q not canonical (%q, %v)", path, ns, req.Registry, canon, err)
		}
		if req.Kind == oci.KindBlob && !req.Reference.IsDigest() {
			t.Fatalf("parseAPI(%q): blob without a digest", path)
		}
		for _, mt := range req.Accept {
			if mt == "" {
				t.Fatalf("empty media type from Accept %q", accept)
			}
		}
	})
}
