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
	// Reference is the tag or digest of a manifest, or the digest of a
	// blob or of the manifest whose referrers are asked for.
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
	// The last three segments name the endpoint, what comes before them
	// the repository; cut without allocating, since every request pays.
	r1, s1 := lastSegment(rest)
	r2, s2 := lastSegment(r1)
	r3, s3 := lastSegment(r2)
	var out Path
	var name string
	switch {
	case s2 == "manifests" && r2 != "":
		out.Kind, name = KindManifest, r2
		ref, err := ParseReference(s1)
		if err != nil {
			return Path{}, ErrManifestInvalid(err.Error())
		}
		out.Reference = ref
	case s2 == "blobs" && r2 != "":
		out.Kind, name = KindBlob, r2
		if s1 == "uploads" {
			out.Kind = KindUpload
			break
		}
		d, err := ParseDigest(s1)
		if err != nil {
			return Path{}, ErrDigestInvalid(err.Error())
		}
		out.Reference = Reference{Digest: d}
	case s3 == "blobs" && s2 == "uploads" && r3 != "":
		out.Kind, name = KindUpload, r3
	case s2 == "tags" && s1 == "list" && r2 != "":
		out.Kind, name = KindTags, r2
	case s2 == "referrers" && r2 != "":
		out.Kind, name = KindReferrers, r2
		d, err := ParseDigest(s1)
		if err != nil {
			return Path{}, ErrDigestInvalid(err.Error())
		}
		out.Reference = Reference{Digest: d}
	default:
		return Path{}, ErrNotFound("no such distribution API endpoint")
	}
	if first, after, ok := strings.Cut(name, "/"); ok && LooksLikeHost(first) {
		reg, err := NormalizeRegistry(first)
		if err != nil {
			return Path{}, ErrNameInvalid(err.Error())
		}
		out.Registry, name = reg, after
	}
	out.Name = name
	if !ValidName(out.Name) {
		return Path{}, ErrNameInvalid("repository name " + quoteShort(out.Name) + " does not match the distribution spec grammar")
	}
	return out, nil
}

// lastSegment cuts the last "/"-separated segment off s.
func lastSegment(s string) (rest, seg string) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
