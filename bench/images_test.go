package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseImages(t *testing.T) {
	want := []Image{
		{"calico/node", "v3.28.2", []string{"linux/amd64", "linux/arm64"}, []Layer{{Size: 40 << 20}, {Size: 32 << 10}}},
		{"cilium/cilium", "v1.16.3", []string{"linux/amd64"}, []Layer{{Size: 28 << 20, Shared: "debian"}, {Size: 1000}}},
	}
	for _, c := range []struct{ name, text string }{
		{"lines", `
# repository  tag  platforms  layers
calico/node   v3.28.2  linux/amd64,linux/arm64  40MiB 32KiB

cilium/cilium v1.16.3  linux/amd64  debian=28MiB 1000
`},
		{"json list", `[
 {"repository": "calico/node", "tag": "v3.28.2", "platforms": ["linux/amd64", "linux/arm64"], "layers": [{"size": "40MiB"}, {"size": 32768}]},
 {"repository": "cilium/cilium", "tag": "v1.16.3", "platforms": ["linux/amd64"], "layers": [{"size": "28MiB", "shared": "debian"}, {"size": "1000"}]}
]`},
		{"json object", `{"images": [
 {"repository": "calico/node", "tag": "v3.28.2", "platforms": ["linux/amd64", "linux/arm64"], "layers": [{"size": "40 MiB"}, {"size": "32KiB"}]},
 {"repository": "cilium/cilium", "tag": "v1.16.3", "platforms": ["linux/amd64"], "layers": [{"size": 29360128, "shared": "debian"}, {"size": 1000}]}
]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseImages([]byte(c.text))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseImagesRefuses(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"empty", "# nothing\n", "no images"},
		{"short line", "app v1 linux/amd64\n", "at least one layer"},
		{"bad size", "app v1 linux/amd64 lots\n", "size"},
		{"too large", "app v1 linux/amd64 9GiB\n", "size"},
		{"bad name", "App v1 linux/amd64 1KiB\n", "repository name"},
		{"bad tag", "app v:1 linux/amd64 1KiB\n", "tag"},
		{"twice", "app v1 linux/amd64 1KiB\napp v1 linux/amd64 2KiB\n", "twice"},
		{"bad platform", "app v1 linux 1KiB\n", "os/arch"},
		{"json no layers", `[{"repository": "app", "tag": "v1", "platforms": ["linux/amd64"]}]`, "no layers"},
		{"json bad size", `[{"repository": "app", "tag": "v1", "platforms": ["linux/amd64"], "layers": [{"size": true}]}]`, "size"},
		{"json negative", `[{"repository": "app", "tag": "v1", "platforms": ["linux/amd64"], "layers": [{"size": -1}]}]`, "negative"},
		{"json too large", `[{"repository": "app", "tag": "v1", "platforms": ["linux/amd64"], "layers": [{"size": 9663676416}]}]`, "over 8GiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseImages([]byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestReadImages(t *testing.T) {
	p := filepath.Join(t.TempDir(), "images.txt")
	if err := os.WriteFile(p, []byte("app v1 linux/amd64 1KiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if imgs, err := ReadImages(p); err != nil || len(imgs) != 1 {
		t.Errorf("ReadImages: %v, %v", imgs, err)
	}
	if _, err := ReadImages(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadImages of a missing file succeeded")
	}
}

// The built-in sets are valid, and the default one is what its comment
// says a node pulls.
func TestBuiltInImages(t *testing.T) {
	for name, imgs := range map[string][]Image{"default": DefaultImages(), "quick": QuickImages()} {
		if err := validateImages(imgs); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var perNode Size
	seen := map[string]bool{}
	for _, img := range DefaultImages() {
		for _, l := range img.Layers {
			if l.Shared == "" || !seen[l.Shared] {
				perNode += l.Size
				seen[l.Shared] = l.Shared != ""
			}
		}
	}
	if perNode != 165<<20+(4+12+6+32+8+20)<<10 {
		t.Errorf("default set: %v of layers per node, want 165 MiB and some KiB", perNode)
	}
}

func TestPercentiles(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Percentiles
	}{
		{nil, Percentiles{}},
		{[]float64{3}, Percentiles{3, 3, 3, 1}},
		{[]float64{5, 1, 4, 2, 3}, Percentiles{3, 5, 5, 5}},
		{[]float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, Percentiles{10, 19, 20, 20}},
	} {
		if got := percentiles(c.in); got != c.want {
			t.Errorf("percentiles(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func FuzzParseImages(f *testing.F) {
	f.Add([]byte("calico/node v3.28.2 linux/amd64,linux/arm64 base=40MiB 32KiB\n"))
	f.Add([]byte(`[{"repository": "a", "tag": "b", "platforms": ["linux/amd64"], "layers": [{"size": "1KiB"}]}]`))
	f.Add([]byte(`{"images": []}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		imgs, err := ParseImages(b)
		if err != nil {
			return
		}
		if err := validateImages(imgs); err != nil {
			t.Errorf("ParseImages returned a set validateImages refuses: %v", err)
		}
	})
}
