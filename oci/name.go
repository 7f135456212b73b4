package oci

import (
	"fmt"
	"regexp"
)

// The grammar of the OCI distribution spec. Names are checked against it
// before they are used anywhere, which also keeps them clear of "..", empty
// components and anything else that could mean something to a file system.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// MaxNameLength bounds a repository name; the spec suggests clients keep a
// registry host plus name under 255 characters.
const MaxNameLength = 255

// ValidName reports whether name is a repository name under the spec.
func ValidName(name string) bool {
	return len(name) <= MaxNameLength && nameRE.MatchString(name)
}

// ValidTag reports whether tag is a tag under the spec.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

// Reference is what follows /manifests/: a tag or a digest, never both.
type Reference struct {
	Tag    string
	Digest Digest
}

// ParseReference accepts a tag or a digest.
func ParseReference(s string) (Reference, error) {
	if ValidTag(s) {
		return Reference{Tag: s}, nil
	}
	d, err := ParseDigest(s)
	if err != nil {
		return Reference{}, fmt.Errorf("reference %.80q: neither a tag nor a digest", s)
	}
	return Reference{Digest: d}, nil
}

// IsDigest reports whether the reference names content by digest (and so is
// immutable).
func (r Reference) IsDigest() bool { return r.Digest != "" }

// String returns the reference as it appears in a URL.
func (r Reference) String() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}
