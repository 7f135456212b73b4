package oci

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const dgA = "sha256:" + "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"

func TestParsePath(t *testing.T) {
	tests := []struct {
		path   string
		want   Path
		status int // 0: no error
	}{
		{"/v2/", Path{Kind: KindBase}, 0},
		{"/v2", Path{Kind: KindBase}, 0},
		{"/v2/library/alpine/manifests/3.20", Path{Kind: KindManifest, Name: "library/alpine", Reference: Reference{Tag: "3.20"}}, 0},
		{"/v2/alpine/manifests/" + dgA, Path{Kind: KindManifest, Name: "alpine", Reference: Reference{Digest: dgA}}, 0},
		{"/v2/org/app/blobs/" + dgA, Path{Kind: KindBlob, Name: "org/app", Reference: Reference{Digest: dgA}}, 0},
		{"/v2/ghcr.io/org/app/blobs/" + dgA, Path{Kind: KindBlob, Registry: "ghcr.io", Name: "org/app", Reference: Reference{Digest: dgA}}, 0},
		{"/v2/localhost:5000/app/manifests/v1", Path{Kind: KindManifest, Registry: "localhost:5000", Name: "app", Reference: Reference{Tag: "v1"}}, 0},
		{"/v2/index.docker.io/library/busybox/manifests/latest", Path{Kind: KindManifest, Registry: "docker.io", Name: "library/busybox", Reference: Reference{Tag: "latest"}}, 0},
		{"/v2/app/blobs/uploads/", Path{Kind: KindUpload, Name: "app"}, 0},
		{"/v2/app/blobs/uploads/abc-123", Path{Kind: KindUpload, Name: "app"}, 0},
		{"/v2/app/tags/list", Path{Kind: KindTags, Name: "app"}, 0},
		{"/v2/app/referrers/" + dgA, Path{Kind: KindReferrers, Name: "app", Reference: Reference{Digest: dgA}}, 0},
		{"/v2/localhost:5000/app/tags/list", Path{Kind: KindTags, Registry: "localhost:5000", Name: "app"}, 0},
		{"/v2/app/referrers/latest", Path{}, http.StatusBadRequest},
		{"/v2/app/referrers/", Path{}, http.StatusBadRequest},
		{"/v2/_catalog", Path{Kind: KindCatalog}, 0},
		// Refusals.
		{"/v1/app/manifests/latest", Path{}, http.StatusNotFound},
		{"/v2x/app/manifests/latest", Path{}, http.StatusNotFound},
		{"/v2/app", Path{}, http.StatusNotFound},
		{"/v2/App/manifests/latest", Path{}, http.StatusBadRequest},
		{"/v2/../etc/manifests/latest", Path{}, http.StatusBadRequest},
		{"/v2/a//b/manifests/latest", Path{}, http.StatusBadRequest},
		{"/v2/a%2fb/manifests/latest", Path{}, http.StatusBadRequest},
		{"/v2/app/manifests/-bad", Path{}, http.StatusBadRequest},
		{"/v2/app/blobs/sha256:abc", Path{}, http.StatusBadRequest},
		{"/v2/app/blobs/md5:" + strings.Repeat("a", 32), Path{}, http.StatusBadRequest},
		{"/v2/app/blobs/sha256:" + strings.Repeat("A", 64), Path{}, http.StatusBadRequest},
		{"/v2/app/blobs/latest", Path{}, http.StatusBadRequest},
		{"/v2/bad_host:99999/app/manifests/v1", Path{}, http.StatusBadRequest},
		{"/v2/" + strings.Repeat("a/", 1100) + "manifests/v1", Path{}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.path[:min(len(tt.path), 60)], func(t *testing.T) {
			got, err := ParsePath(tt.path)
			if tt.status != 0 {
				e, ok := AsError(err)
				if !ok || e.Status != tt.status {
					t.Fatalf("ParsePath(%q) = %+v, %v; want status %d", tt.path, got, err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tt.path, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParsePath(%q) (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestNormalizeRegistry(t *testing.T) {
	tests := []struct{ in, want string }{
		{"docker.io", "docker.io"},
		{"index.docker.io", "docker.io"},
		{"registry-1.docker.io", "docker.io"},
		{"GHCR.io", "ghcr.io"},
		{"localhost:5000", "localhost:5000"},
		{"[::1]:5000", "[::1]:5000"},
		{"", ""},
		{"a/b", ""},
		{"host:0", ""},
		{"host:65536", ""},
		{"host:05", ""},
		{"-host.io", ""},
		{"host..io", ""},
		{"[zz]:1", ""},
		{"host:", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeRegistry(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("NormalizeRegistry(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeRepository(t *testing.T) {
	for _, tt := range []struct{ reg, name, want string }{
		{"docker.io", "alpine", "library/alpine"},
		{"docker.io", "grafana/loki", "grafana/loki"},
		{"ghcr.io", "app", "app"},
	} {
		if got := NormalizeRepository(tt.reg, tt.name); got != tt.want {
			t.Errorf("NormalizeRepository(%q, %q) = %q, want %q", tt.reg, tt.name, got, tt.want)
		}
	}
}

func TestDigest(t *testing.T) {
	d, err := ParseDigest(dgA)
	if err != nil {
		t.Fatal(err)
	}
	if d.Algorithm() != "sha256" || d.Short() != "sha256:a3ed95caeb02" {
		t.Errorf("Algorithm %q Short %q", d.Algorithm(), d.Short())
	}
	h := FromBytes([]byte("hello"))
	hh := h.NewHash()
	hh.Write([]byte("hello"))
	if !h.Matches(hh) {
		t.Error("FromBytes digest does not match its own content")
	}
	if _, err := ParseDigest("sha512:" + strings.Repeat("0", 128)); err != nil {
		t.Errorf("sha512: %v", err)
	}
}

// FuzzParsePath: whatever a client sends, parsing never panics, and what it
// accepts is safe to use as a name and a file name.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/library/alpine/manifests/latest", "/v2/ghcr.io/a/b/blobs/" + dgA,
		"/v2/a/blobs/uploads/x", "/v2/../../x/manifests/y", "/v2/a/tags/list", "/v2/localhost:1/a/manifests/" + dgA, "/v2/a/referrers/" + dgA} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := ParsePath(p)
		if err != nil {
			if _, ok := AsError(err); !ok {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		if got.Kind != KindBase && got.Kind != KindCatalog && !ValidName(got.Name) {
			t.Fatalf("accepted invalid name %q", got.Name)
		}
		for _, s := range []string{got.Name, got.Reference.String(), got.Registry} {
			if strings.Contains(s, "..") || strings.ContainsAny(s, "\\\x00%") {
				t.Fatalf("accepted unsafe component %q", s)
			}
		}
		if got.Reference.Digest != "" {
			if _, err := ParseDigest(string(got.Reference.Digest)); err != nil {
				t.Fatalf("accepted invalid digest: %v", err)
			}
		}
	})
}

// FuzzNormalizeRegistry: accepted registries are canonical and stable.
func FuzzNormalizeRegistry(f *testing.F) {
	for _, s := range []string{"docker.io", "localhost:5000", "[::1]:1", "a.b.c:443", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeRegistry(s)
		if err != nil {
			return
		}
		again, err := NormalizeRegistry(got)
		if err != nil || again != got {
			t.Fatalf("not stable: %q → %q → %q, %v", s, got, again, err)
		}
		if strings.ContainsAny(got, "/\\ \x00@?#") {
			t.Fatalf("accepted %q", got)
		}
	})
}
