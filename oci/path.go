package oci

import "strings"

// Kind says which part of the distribution API a request addresses.
type Kind uint8

const (
	KindUnknown   Kind = iota
	KindBase           // /v2/
	KindManifest       // /v2/<name>/manifests/<reference>
	KindBlob           // /v2/<name>/blobs/<digest>
	KindUpload         // /v2/<name>/blobs/uploads/... (push)
	KindTags           // /v2/<name>/tags/list
	KindReferrers      // /v2/<name>/referrers/<digest>
	KindCatalog        // /v2/_catalog
)

// String names the kind for logs and metric labels.
func (k Kind) String() string {
	switch k {
	case KindBase:
		return "base"
	case KindManifest:
		return "manifest"
	case KindBlob:
		return "blob"
	case KindUpload:
		return "upload"
	case KindTags:
		return "tags"
	case KindReferrers:
		return "referrers"
	case KindCatalog:
		return "catalog"
	}
	return "other"
}

// Path is a distribution API request path, parsed and validated.
type Path struct {
	Kind Kind
	// Registry is the canonical registry named by a host-like first path
	// component (/v2/ghcr.io/org/app/...), or "" when the path names none.
	Registry string
	// Name is the repository name, without the registry component.
	Name string
	// Reference is the tag or digest of a manifest, or the digest of a blob.
	Reference Reference
}

// MaxPathLength bounds what ParsePath reads: a registry, a name and a
// sha512 digest fit with room to spare.
const MaxPathLength = 2048

// ParsePath parses the path of a request to the distribution API. It takes
// the path as sent (not percent-decoded): the grammar admits no escapes, so a
// '%' is simply invalid. Push, catalog, tags and referrers paths parse to
// their Kind with the name validated, so that the caller can refuse them with
// the right error.
func ParsePath(p string) (Path, error) {
	if len(p) > MaxPathLength {
		return Path{}, ErrNameInvalid("path too long")
	}
	rest, ok := strings.CutPrefix(p, "/v2")
	if !ok || (rest != "" && rest[0] != '/') {
		return Path{}, ErrNotFound("not a distribution API path")
	}
	rest = strings.TrimPrefix(rest, "/")
	if rest == "" {
		return Path{Kind: KindBase}, nil
	}
	if rest == "_catalog" {
		return Path{Kind: KindCatalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var out Path
	var nameSegs []string
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		out.Kind, nameSegs = KindManifest, segs[:n-2]
		ref, err := ParseReference(segs[n-1])
		if err != nil {
			return Path{}, ErrManifestInvalid(err.Error())
		}
		out.Reference = ref
	case n >= 3 && segs[n-2] == "blobs":
		out.Kind, nameSegs = KindBlob, segs[:n-2]
		if segs[n-1] == "uploads" {
			out.Kind = KindUpload
			break
		}
		d, err := ParseDigest(segs[n-1])
		if err != nil {
			return Path{}, ErrDigestInvalid(err.Error())
		}
		out.Reference = Reference{Digest: d}
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		out.Kind, nameSegs = KindUpload, segs[:n-3]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		out.Kind, nameSegs = KindTags, segs[:n-2]
	case n >= 3 && segs[n-2] == "referrers":
		out.Kind, nameSegs = KindReferrers, segs[:n-2]
	default:
		return Path{}, ErrNotFound("no such distribution API endpoint")
	}
	if len(nameSegs) > 1 && LooksLikeHost(nameSegs[0]) {
		reg, err := NormalizeRegistry(nameSegs[0])
		if err != nil {
			return Path{}, ErrNameInvalid(err.Error())
		}
		out.Registry, nameSegs = reg, nameSegs[1:]
	}
	out.Name = strings.Join(nameSegs, "/")
	if !ValidName(out.Name) {
		return Path{}, ErrNameInvalid("repository name " + quoteShort(out.Name) + " does not match the distribution spec grammar")
	}
	return out, nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
