package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/cacheyd/cacheyd/oci"
)

// Image is one image of the set every node pulls.
type Image struct {
	// Repository is the name as a node asks for it, such as "calico/node".
	Repository string `json:"repository"`
	// Tag is the tag a node resolves (with HEAD, as containerd does).
	Tag string `json:"tag"`
	// Platforms lists the platforms the image is built for ("linux/amd64").
	// More than one makes the tag an OCI index, as multi-arch images on
	// Docker Hub are; one makes it a plain image manifest. Every platform
	// gets its own random layers of the same sizes.
	Platforms []string `json:"platforms"`
	// Layers are the image's layers, base first.
	Layers []Layer `json:"layers"`
}

// Layer is one layer of an Image.
type Layer struct {
	// Size is the layer blob's size in bytes (within 2 KiB: a layer is a
	// tar holding one file of random bytes of this size).
	Size Size `json:"size"`
	// Shared names a layer that several images have in common, as images
	// built FROM the same base do: every layer of the set with the same
	// name is the same blob (per platform), and the first one met sets its
	// size. Empty means the layer is the image's own.
	Shared string `json:"shared,omitempty"`
}

// Size is a number of bytes, written in JSON as a number or as a string
// such as "28MiB".
type Size int64

// UnmarshalJSON reads a number of bytes or a size such as "28MiB".
func (s *Size) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*s = Size(n)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("size %s: want a number of bytes or a string such as \"28MiB\"", b)
	}
	v, err := parseSize(str)
	*s = v
	return err
}

func (s Size) String() string { return humanize.IBytes(uint64(s)) }

// maxLayer bounds one layer: the fake upstream holds every layer in memory.
const maxLayer = 8 << 30

func parseSize(s string) (Size, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > maxLayer {
		return 0, fmt.Errorf("size %q: want a number of bytes up to 8GiB, such as 28MiB", s)
	}
	return Size(n), nil
}

// DefaultImages is what every new node of a cluster pulls before it runs a
// workload, shaped like the DaemonSets and init containers of a typical
// cluster: multi-arch indexes (amd64 and arm64), base layers shared between
// images, and layers from a few KiB to 112 MiB. A node pulls 165 MiB of it;
// upstream holds twice that (both platforms). It is sized so that a
// default run, whose bursts of 64 nodes move 64 × 165 MiB through loopback
// with every digest verified, ends within two minutes on two cores.
func DefaultImages() []Image {
	both := []string{"linux/amd64", "linux/arm64"}
	return []Image{
		{"library/busybox", "1.36.1", both, []Layer{{Size: 2 << 20, Shared: "busybox"}}},
		{"prom/node-exporter", "v1.8.2", both, []Layer{{Size: 2 << 20, Shared: "busybox"}, {Size: 9 << 20}, {Size: 4 << 10}}},
		{"fluent/fluent-bit", "3.1.9", both, []Layer{{Size: 28 << 20, Shared: "debian"}, {Size: 6 << 20}, {Size: 12 << 10}, {Size: 6 << 10}}},
		{"calico/node", "v3.28.2", both, []Layer{{Size: 8 << 20}, {Size: 32 << 10}}},
		{"cilium/cilium", "v1.16.3", both, []Layer{{Size: 28 << 20, Shared: "debian"}, {Size: 112 << 20}, {Size: 8 << 10}, {Size: 20 << 10}}},
	}
}

// QuickImages is a small set for a run of seconds (CI): three images, two
// of them multi-arch, with a shared layer, about 5 MiB per node.
func QuickImages() []Image {
	both := []string{"linux/amd64", "linux/arm64"}
	return []Image{
		{"library/busybox", "1.36.1", both, []Layer{{Size: 256 << 10, Shared: "base"}}},
		{"quick/agent", "v1", both, []Layer{{Size: 256 << 10, Shared: "base"}, {Size: 3 << 20}, {Size: 2 << 10}}},
		{"quick/tool", "v2", []string{"linux/amd64"}, []Layer{{Size: 1 << 20}, {Size: 64 << 10}, {Size: 1}}},
	}
}

// ReadImages reads an image set from a file: JSON (a list of Image, or an
// object whose "images" holds one) when it starts with '[' or '{', else
// the line format:
//
//	# repository  tag  platforms                layers: [name=]size ...
//	calico/node    v3.28.2  linux/amd64,linux/arm64  40MiB 32KiB
//	cilium/cilium  v1.16.3  linux/amd64,linux/arm64  debian=28MiB 160MiB
//
// Blank lines and lines starting with '#' are skipped. A layer written
// name=size is shared by every image naming it (see Layer.Shared).
func ReadImages(path string) ([]Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image set: %w", err)
	}
	imgs, err := ParseImages(b)
	if err != nil {
		return nil, fmt.Errorf("image set %s: %w", path, err)
	}
	return imgs, nil
}

// ParseImages parses an image set in either format ReadImages reads.
func ParseImages(b []byte) ([]Image, error) {
	trimmed := bytes.TrimSpace(b)
	var imgs []Image
	switch {
	case bytes.HasPrefix(trimmed, []byte("[")):
		if err := json.Unmarshal(trimmed, &imgs); err != nil {
			return nil, err
		}
	case bytes.HasPrefix(trimmed, []byte("{")):
		var doc struct {
			Images []Image `json:"images"`
		}
		if err := json.Unmarshal(trimmed, &doc); err != nil {
			return nil, err
		}
		imgs = doc.Images
	default:
		var err error
		if imgs, err = parseLines(bytes.NewReader(b)); err != nil {
			return nil, err
		}
	}
	if err := validateImages(imgs); err != nil {
		return nil, err
	}
	return imgs, nil
}

func parseLines(r io.Reader) ([]Image, error) {
	var imgs []Image
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: want repository, tag, platforms and at least one layer size", line)
		}
		img := Image{Repository: f[0], Tag: f[1], Platforms: strings.Split(f[2], ",")}
		for _, tok := range f[3:] {
			name, size, shared := strings.Cut(tok, "=")
			if !shared {
				size, name = name, ""
			}
			n, err := parseSize(size)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			img.Layers = append(img.Layers, Layer{Size: n, Shared: name})
		}
		imgs = append(imgs, img)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return imgs, nil
}

// validateImages checks what seeding and pulling rely on.
func validateImages(imgs []Image) error {
	if len(imgs) == 0 {
		return errors.New("no images")
	}
	seen := map[string]bool{}
	for i, img := range imgs {
		what := "image " + strconv.Itoa(i+1) + " (" + img.Repository + ":" + img.Tag + ")"
		ref := img.Repository + ":" + img.Tag
		switch {
		case !oci.ValidName(img.Repository):
			return fmt.Errorf("%s: repository name is not valid", what)
		case !oci.ValidTag(img.Tag):
			return fmt.Errorf("%s: tag is not valid", what)
		case seen[ref]:
			return fmt.Errorf("%s: listed twice", what)
		case len(img.Platforms) == 0:
			return fmt.Errorf("%s: no platforms", what)
		case len(img.Layers) == 0:
			return fmt.Errorf("%s: no layers", what)
		}
		seen[ref] = true
		for _, p := range img.Platforms {
			if os, arch, ok := strings.Cut(p, "/"); !ok || os == "" || arch == "" {
				return fmt.Errorf("%s: platform %q is not os/arch", what, p)
			}
		}
		for _, l := range img.Layers {
			if l.Size < 0 || l.Size > maxLayer {
				return fmt.Errorf("%s: layer size %d is negative or over 8GiB", what, l.Size)
			}
		}
	}
	return nil
}
