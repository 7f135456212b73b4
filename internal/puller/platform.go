package puller

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ParsePlatform reads a platform as "os/arch" or "os/arch/variant", such
// as "linux/amd64" or "linux/arm64/v8"; both os and arch are required.
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant, such as linux/amd64", s)
	}
	return *p, nil
}

// choose picks the manifests of an index to pull: those whose platform
// satisfies one of want (every one when want is empty; a platform with no
// variant satisfies every variant), never attestations.
func choose(all []v1.Descriptor, want []v1.Platform) ([]v1.Descriptor, error) {
	var out []v1.Descriptor
	var have []string
	for _, d := range all {
		if attestation(d) {
			continue
		}
		if d.Platform != nil {
			have = append(have, d.Platform.String())
		}
		if len(want) == 0 {
			out = append(out, d)
			continue
		}
		for _, p := range want {
			if d.Platform != nil && d.Platform.Satisfies(p) {
				out = append(out, d)
				break
			}
		}
	}
	if len(out) == 0 {
		names := []string{"any platform"}
		if len(want) > 0 {
			names = names[:0]
			for _, p := range want {
				names = append(names, p.String())
			}
		}
		return nil, fmt.Errorf("no manifest for %s (it has %s)", strings.Join(names, ", "), strings.Join(have, ", "))
	}
	return out, nil
}

// attestation reports whether d is a build attestation (provenance, SBOM)
// rather than an image: BuildKit marks them so and gives them the platform
// unknown/unknown. Nodes never pull them.
func attestation(d v1.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// foreign reports whether a layer is one that nodes fetch from elsewhere
// (Windows base layers with URLs): registries, and so cacheyd, do not hold
// them. The media type is matched by its words rather than with
// types.MediaType.IsDistributable, whose list lacks the zstd variants.
func foreign(d v1.Descriptor) bool {
	mt := string(d.MediaType)
	return len(d.URLs) > 0 || strings.Contains(mt, "foreign") || strings.Contains(mt, "nondistributable")
}

// Choose is the manifests of an index a pull of platforms fetches, as
// Image chooses them: for a caller that reads an index another way.
func Choose(all []v1.Descriptor, platforms []v1.Platform) ([]v1.Descriptor, error) {
	return choose(all, platforms)
}
