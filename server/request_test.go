package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"

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

// FuzzParseRequest feeds the whole request parse, from a request URI
// (path and query, as fasthttp reads them) and headers to the oci.Request:
// it must not panic, must refuse with a registry's 4xx answer, and must
// never build a request whose registry is not canonical or whose repository
// breaks the distribution grammar.
func FuzzParseRequest(f *testing.F) {
	for _, uri := range []string{
		"/v2/alpine/manifests/latest",
		"/v2/alpine/manifests/latest?ns=docker.io",
		"/v2/team.name/app/blobs/" + string(digestA) + "?ns=registry.example.com&ns=other",
		"/v2/ghcr.io/org/app/manifests/v1",
		"/v2/docker.io/" + strings.Repeat("a", 250) + "/manifests/x",
		"/v2/a/b/blobs/uploads/x",
		"/v2/../x/manifests/y?ns=%5B::1%5D:5000",
		"http://host/v2/a%2fb/manifests/y?ns=",
		"/v2/_catalog",
		"/v2/a/tags/list?n=10&last=b&ns=ghcr.io",
		"/v2/a/tags/list?n=1&n=2",
		"/v2/a/referrers/" + string(digestA) + "?artifactType=application/vnd.x%2Bjson",
	} {
		f.Add(uri, "application/json;q=1, */*", "Bearer x", "bytes=0-")
	}
	f.Fuzz(func(t *testing.T, uri, accept, auth, rng string) {
		var req fasthttp.Request
		req.Header.SetMethod(http.MethodGet)
		req.SetRequestURI(uri)
		req.Header.Set("Accept", accept)
		req.Header.Set("Authorization", auth)
		req.Header.Set("Range", rng)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		in := readIncoming(&ctx)
		parseRange(in.rangeHeader, 1000)
		ar, err := parseAPI(&in, oci.DockerHub)
		if err != nil {
			e, ok := oci.AsError(err)
			if !ok || e.Status < 400 || e.Status > 499 || e.Code == "" {
				t.Fatalf("parseAPI(%q): error %v is not a 4xx registry answer", in.path, err)
			}
			return
		}
		if k := ar.path.Kind; k.IsListing() {
			if err := ar.req.List.Validate(k); err != nil {
				t.Fatalf("%q: a listing query that does not validate: %v", uri, err)
			}
		}
		if k := ar.path.Kind; k != oci.KindManifest && k != oci.KindBlob {
			return
		}
		r := ar.req
		if !oci.ValidName(r.Repository) {
			t.Fatalf("%q: repository %q fails the grammar", uri, r.Repository)
		}
		if canon, err := oci.NormalizeRegistry(r.Registry); err != nil || canon != r.Registry {
			t.Fatalf("%q: registry %q not canonical (%q, %v)", uri, r.Registry, canon, err)
		}
		if r.Kind == oci.KindBlob && !r.Reference.IsDigest() {
			t.Fatalf("%q: blob without a digest", uri)
		}
		if slices.Contains(r.Accept, "") {
			t.Fatalf("empty media type from Accept %q", accept)
		}
	})
}
