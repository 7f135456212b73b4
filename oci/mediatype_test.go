package oci

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestSniffManifestMediaType(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`, "application/vnd.docker.distribution.manifest.v2+json"},
		{`{"schemaVersion":2,"manifests":[]}`, "application/vnd.oci.image.index.v1+json"},
		{`{"schemaVersion":2,"layers":[]}`, "application/vnd.oci.image.manifest.v1+json"},
		{`not json`, "application/vnd.oci.image.manifest.v1+json"},
		{``, "application/vnd.oci.image.manifest.v1+json"},
		// A mediaType that is not a bare type/subtype would become a
		// response header as it is: it is ignored.
		{`{"mediaType":"a/b\r\nSet-Cookie: x=1","manifests":[]}`, "application/vnd.oci.image.index.v1+json"},
		{`{"mediaType":"text/html; charset=utf-8"}`, "application/vnd.oci.image.manifest.v1+json"},
		{`{"mediaType":"nonsense"}`, "application/vnd.oci.image.manifest.v1+json"},
	}
	for _, tt := range tests {
		if got := SniffManifestMediaType([]byte(tt.in)); got != tt.want {
			t.Errorf("SniffManifestMediaType(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzSniffManifestMediaType: whatever upstream sends as a manifest, the
// guess never panics, is one of the known types unless the manifest names
// its own, and is a single header-safe line (it becomes a Content-Type).
func FuzzSniffManifestMediaType(f *testing.F) {
	for _, s := range []string{
		`{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
		`{"schemaVersion":2,"manifests":null}`,
		`{"mediaType":""}`, `{"mediaType":"a\r\nSet-Cookie: x"}`, `[]`, `{`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := SniffManifestMediaType(data)
		if got == "" {
			t.Fatal("empty media type")
		}
		if slices.Contains(ManifestMediaTypes, got) {
			return
		}
		var own struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(data, &own) != nil || own.MediaType != got {
			t.Fatalf("%q: guessed %q, neither a known type nor the manifest's own", data, got)
		}
		if !ValidMediaType(got) || strings.ContainsAny(got, "\r\n\x00 ;,") {
			t.Fatalf("%q: media type %q is not a bare type/subtype", data, got)
		}
	})
}

func TestParseDigestAlgorithms(t *testing.T) {
	hex64, hex128 := "", ""
	for range 64 {
		hex64 += "a"
	}
	hex128 = hex64 + hex64
	tests := []struct {
		in string
		ok bool
	}{
		{"sha256:" + hex64, true},
		{"sha512:" + hex128, true},
		{"sha384:" + hex64 + hex64[:32], false}, // not in the OCI image spec
		{"md5:" + hex64[:32], false},
		{"SHA256:" + hex64, false},
		{"sha256:" + hex64[:63] + "A", false},
		{"sha256:" + hex64 + "a", false},
		{"sha512:" + hex64, false},
		{"sha256+b64u:" + hex64, false},
		{"sha256:../../" + hex64[:58], false},
		{"sha256", false},
		{"", false},
	}
	for _, tt := range tests {
		if _, err := ParseDigest(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseDigest(%q) error %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

// FuzzParseDigest: an accepted digest is one of the spec's algorithms with
// lower-case hex of its exact length, so it is safe as a file name, and its
// hash can be made.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{"sha256:" + string(make([]byte, 64)), "sha512:00", "sha256:../x", "sha256:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		want := map[string]int{"sha256": 64, "sha512": 128}[d.Algorithm()]
		if want == 0 || len(d.Hex()) != want {
			t.Fatalf("accepted %q", s)
		}
		for _, c := range d.Hex() {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				t.Fatalf("accepted %q", s)
			}
		}
		_ = d.NewHash()
	})
}
