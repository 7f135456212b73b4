package warm

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/cacheyd/cacheyd/oci"
)

// Image is one image to warm, parsed from a reference such as
// "docker.io/library/alpine:3.20", "ghcr.io/org/app@sha256:..." or "alpine".
type Image struct {
	// Ref is the reference as given.
	Ref string
	// Registry is the canonical registry, sent as ?ns= ("docker.io" for
	// every spelling of Docker Hub).
	Registry string
	// Repository is the repository within the registry ("library/alpine").
	Repository string
	// Reference is the tag or the digest ("latest", "sha256:...").
	Reference oci.Reference
}

// String is the image in its full form, registry/repository:tag or @digest.
func (im Image) String() string {
	if im.Reference.IsDigest() {
		return im.Registry + "/" + im.Repository + "@" + string(im.Reference.Digest)
	}
	return im.Registry + "/" + im.Repository + ":" + im.Reference.Tag
}

// ParseImage parses an image reference the way docker and containerd do: no
// registry means Docker Hub, a one-word Docker Hub name lives under
// library/, and no tag means "latest". A reference with both a tag and a
// digest is pinned to the digest.
func ParseImage(s string) (Image, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", s, err)
	}
	registry, err := oci.NormalizeRegistry(ref.Context().RegistryStr())
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", s, err)
	}
	r, err := oci.ParseReference(ref.Identifier())
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", s, err)
	}
	repo := oci.NormalizeRepository(registry, ref.Context().RepositoryStr())
	if !oci.ValidName(repo) {
		return Image{}, fmt.Errorf("image %q: repository %q is not a valid name", s, repo)
	}
	return Image{Ref: s, Registry: registry, Repository: repo, Reference: r}, nil
}

// maxListLine bounds one line of an image list.
const maxListLine = 4096

// ReadList reads image references, one a line, from r. Blank lines and
// lines starting with # are skipped, as is anything after " #" on a line.
// It stops at the first line that does not parse, naming its line number.
func ReadList(r io.Reader) ([]Image, error) {
	var out []Image
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxListLine)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		im, err := ParseImage(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, im)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading image list: %w", err)
	}
	return out, nil
}
