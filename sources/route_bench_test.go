package sources_test

import (
	"net/http"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// BenchmarkRoute is what deciding a route costs the cache on every request
// for content by digest, hits included: nothing for a cacheyd alone, one
// route and its steps with an owner and a parent (the owner's ranking
// aside, which is the cluster's).
func BenchmarkRoute(b *testing.B) {
	req := &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app",
		Reference: oci.Reference{Digest: oci.FromBytes([]byte("x"))}}
	registry := &fake{}
	for _, bb := range []struct {
		name string
		set  sources.Set
	}{
		{"alone", sources.Set{Registry: registry}},
		{"owner and parent", sources.Set{Owner: &owner{member: &fake{}}, Parent: sources.Just{&fake{}}, Registry: registry}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			pol := sources.New(bb.set)
			b.ReportAllocs()
			for b.Loop() {
				if pol.Route(req).Key() == "unexpected" {
					b.Fatal("unexpected key")
				}
			}
		})
	}
}
