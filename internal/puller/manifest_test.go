package puller

import (
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

const hexA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseManifest(t *testing.T) {
	image := `{"schemaVersion":2,%s"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + hexA + `","size":2},"layers":[]}`
	index := `{"schemaVersion":2,%s"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + hexA + `","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}`
	with := func(format, mediaType string) string {
		if mediaType != "" {
			mediaType = `"mediaType":"` + mediaType + `",`
		}
		return strings.Replace(format, "%s", mediaType, 1)
	}
	tests := []struct {
		name, contentType, body string
		index                   bool
		wantErr                 string
	}{
		{"OCI index by Content-Type", "application/vnd.oci.image.index.v1+json", with(index, ""), true, ""},
		{"Docker list in the body", "application/json", with(index, "application/vnd.docker.distribution.manifest.list.v2+json"), true, ""},
		{"OCI image, Content-Type with parameters", "application/vnd.oci.image.manifest.v1+json; charset=utf-8", with(image, ""), false, ""},
		{"Docker image in the body", "", with(image, "application/vnd.docker.distribution.manifest.v2+json"), false, ""},
		{"image by its fields", "text/plain", with(image, ""), false, ""},
		{"index by its fields", "", with(index, ""), true, ""},
		{"schema 1 by Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1}`, false, "schema 1"},
		{"schema 1 by version", "", `{"schemaVersion":1,"fsLayers":[]}`, false, "schema 1"},
		{"neither", "", `{"schemaVersion":2}`, false, "neither an image manifest nor an index"},
		{"not JSON", "", `{`, false, "manifest sha256:"},
		{"bad digest", "", strings.Replace(with(image, ""), hexA, "xyz", 1), false, "manifest sha256:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseManifest(oci.FromBytes([]byte(tt.body)), tt.contentType, []byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseManifest: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.index != (m.Index != nil) || (m.Index == nil) == (m.Image == nil) {
				t.Fatalf("index %v, image %v; want index %v", m.Index != nil, m.Image != nil, tt.index)
			}
			if m.Index != nil && (len(m.Index.Manifests) != 1 || m.Index.Manifests[0].Platform.OS != "linux") {
				t.Errorf("index %+v", m.Index)
			}
			if m.Image != nil && m.Image.Config.Size != 2 {
				t.Errorf("image %+v", m.Image)
			}
		})
	}
}

// FuzzParseManifest: a manifest comes from a server; whatever it holds,
// parsing must not panic, and what parses is an index or an image.
func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{`{"schemaVersion":2,"manifests":[]}`, `{"config":{"digest":"sha256:` + hexA + `"}}`, `{"schemaVersion":1}`, `[]`} {
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		m, err := parseManifest(oci.FromBytes([]byte(body)), contentType, []byte(body))
		if err == nil && (m.Index == nil) == (m.Image == nil) {
			t.Errorf("%q: index %v, image %v", body, m.Index != nil, m.Image != nil)
		}
	})
}
