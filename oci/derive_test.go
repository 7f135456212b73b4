package oci

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// full is a request with every field set, as a peer's request for a
// client's window, routed, with credentials, may be.
func full() *Request {
	return &Request{
		Method:        http.MethodGet,
		Kind:          KindManifest,
		Registry:      "ghcr.io",
		Repository:    "team/app",
		Reference:     Reference{Tag: "v1"},
		List:          ListQuery{N: "10", Last: "a", ArtifactType: "t"},
		Window:        Window{Offset: 5, Length: 10},
		Wants:         Window{Suffix: 100},
		Accept:        []string{ManifestMediaTypes[1]},
		Authorization: "Bearer client",
		FromPeer:      true,
		Via:           []string{"a1", "b2"},
		Route:         "10.0.0.2:5000",
		Cached:        true,
	}
}

// TestFullSetsEveryField: a field added to Request must be set in full, so
// that TestDerivedRequests says what each derived request does with it.
func TestFullSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(*full())
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("full() leaves Request.%s zero: say what each derived request does with it", v.Type().Field(i).Name)
		}
	}
}

// TestDerivedRequests: what each derived request resets and what it keeps,
// and that the request it is derived from is left as it was.
func TestDerivedRequests(t *testing.T) {
	d := Digest("sha256:" + "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd")
	w := Window{Offset: 1 << 20, Length: 4 << 20}
	tests := []struct {
		name   string
		from   func(*Request) // changes full() before deriving, if not nil
		derive func(*Request) *Request
		want   func(*Request) // changes what it is derived from
	}{
		{"Whole", nil, (*Request).Whole, func(r *Request) {
			r.Method, r.Window, r.Wants = http.MethodGet, Window{}, Window{}
		}},
		{"Whole of a HEAD", func(r *Request) { r.Method = http.MethodHead }, (*Request).Whole, func(r *Request) {
			r.Method, r.Window, r.Wants = http.MethodGet, Window{}, Window{}
		}},
		{"Part", nil, func(r *Request) *Request { return r.Part(w) }, func(r *Request) {
			r.Method, r.Window, r.Wants = http.MethodGet, w, Window{}
		}},
		{"AsCacheyd", nil, (*Request).AsCacheyd, func(r *Request) {
			r.Authorization = ""
		}},
		{"Head", nil, (*Request).Head, func(r *Request) {
			r.Method, r.Window, r.Wants, r.Route, r.Cached = http.MethodHead, Window{}, Window{}, "", false
		}},
		{"ByDigest", nil, func(r *Request) *Request { return r.ByDigest(d) }, func(r *Request) {
			r.Reference, r.Route, r.Cached = Reference{Digest: d}, "", false
		}},
		{"Lookup HEAD", nil, func(r *Request) *Request { return r.Lookup(http.MethodHead) }, func(r *Request) {
			r.Method, r.Authorization, r.Accept, r.Window, r.Wants, r.Route, r.Cached = http.MethodHead, "", nil, Window{}, Window{}, "", false
		}},
		{"Lookup GET", nil, func(r *Request) *Request { return r.Lookup(http.MethodGet) }, func(r *Request) {
			r.Method, r.Authorization, r.Accept, r.Window, r.Wants, r.Route, r.Cached = http.MethodGet, "", nil, Window{}, Window{}, "", false
		}},
		{"Whole, as cacheyd", nil, func(r *Request) *Request { return r.Whole().AsCacheyd() }, func(r *Request) {
			r.Method, r.Window, r.Wants, r.Authorization = http.MethodGet, Window{}, Window{}, ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, want, was := full(), full(), full()
			if tt.from != nil {
				tt.from(r)
				tt.from(want)
				tt.from(was)
			}
			got := tt.derive(r)
			tt.want(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("derived request (-want +got):\n%s", diff)
			}
			if got == r {
				t.Error("derived request is the request itself")
			}
			if diff := cmp.Diff(was, r); diff != "" {
				t.Errorf("request derived from was changed (-was +now):\n%s", diff)
			}
		})
	}
}
