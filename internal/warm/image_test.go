package warm

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/oci"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseImage(t *testing.T) {
	tests := []struct {
		in      string
		want    Image
		wantStr string
	}{
		{"alpine", Image{Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Tag: "latest"}}, "docker.io/library/alpine:latest"},
		{"docker.io/library/alpine:3.20", Image{Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Tag: "3.20"}}, "docker.io/library/alpine:3.20"},
		{"docker.io/alpine", Image{Registry: "docker.io", Repository: "library/alpine", Reference: oci.Reference{Tag: "latest"}}, ""},
		{"index.docker.io/team/app:v1", Image{Registry: "docker.io", Repository: "team/app", Reference: oci.Reference{Tag: "v1"}}, "docker.io/team/app:v1"},
		{"registry-1.docker.io/library/busybox", Image{Registry: "docker.io", Repository: "library/busybox", Reference: oci.Reference{Tag: "latest"}}, ""},
		{"ghcr.io/org/app@" + testDigest, Image{Registry: "ghcr.io", Repository: "org/app", Reference: oci.Reference{Digest: testDigest}}, "ghcr.io/org/app@" + testDigest},
		{"ghcr.io/org/app:v2@" + testDigest, Image{Registry: "ghcr.io", Repository: "org/app", Reference: oci.Reference{Digest: testDigest}}, ""},
		{"localhost:5000/team/app:v1", Image{Registry: "localhost:5000", Repository: "team/app", Reference: oci.Reference{Tag: "v1"}}, "localhost:5000/team/app:v1"},
		{"registry.example.com/a/b/c:1.0", Image{Registry: "registry.example.com", Repository: "a/b/c", Reference: oci.Reference{Tag: "1.0"}}, ""},
		{"quay.io/app", Image{Registry: "quay.io", Repository: "app", Reference: oci.Reference{Tag: "latest"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseImage(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Ref = tt.in
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseImage(%q) (-want +got):\n%s", tt.in, diff)
			}
			if tt.wantStr != "" && got.String() != tt.wantStr {
				t.Errorf("String() = %q, want %q", got.String(), tt.wantStr)
			}
		})
	}
}

func TestParseImageRejects(t *testing.T) {
	for _, in := range []string{
		"", "UPPER/Case", "app:", "app@sha256:short", "a b", "-app", "app:bad tag", "ghcr.io//x",
	} {
		if im, err := ParseImage(in); err == nil {
			t.Errorf("ParseImage(%q) = %+v, want an error", in, im)
		}
	}
}

func TestReadList(t *testing.T) {
	in := `# images for the morning scale-up
alpine
  docker.io/library/busybox:1.36   # trailing comment

ghcr.io/org/app@` + testDigest + `
`
	got, err := ReadList(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, im := range got {
		refs = append(refs, im.String())
	}
	want := []string{"docker.io/library/alpine:latest", "docker.io/library/busybox:1.36", "ghcr.io/org/app@" + testDigest}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Errorf("ReadList (-want +got):\n%s", diff)
	}

	_, err = ReadList(strings.NewReader("alpine\n\nNOT VALID\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("ReadList of a bad line: %v, want an error naming line 3", err)
	}
	_, err = ReadList(strings.NewReader(strings.Repeat("a", maxListLine+1)))
	if err == nil {
		t.Error("ReadList of an overlong line: no error")
	}
}

// FuzzReadList: an image list is read from a file the operator may not have
// written; whatever it holds, reading it must not panic, and every image
// it yields must be one cacheyd would accept.
func FuzzReadList(f *testing.F) {
	for _, s := range []string{"alpine\n", "# c\nghcr.io/org/app@" + testDigest, "localhost:5000/a:b #x", "a:b:c\n", "[::1]:5000/app"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ims, err := ReadList(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, im := range ims {
			if _, err := oci.NormalizeRegistry(im.Registry); err != nil {
				t.Errorf("%q: registry %q: %v", im.Ref, im.Registry, err)
			}
			if !oci.ValidName(im.Repository) {
				t.Errorf("%q: repository %q is not valid", im.Ref, im.Repository)
			}
			if im.Reference.String() == "" {
				t.Errorf("%q: empty reference", im.Ref)
			}
		}
	})
}
