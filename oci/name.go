package oci

import (
	"fmt"
	"strings"
)

// The grammar of the OCI distribution spec, checked by hand rather than with
// regular expressions because every request is checked (the expressions
// cost 5% of a warm manifest hit); name_test.go checks the two agree:
//
//	name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//	tag:  [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
//
// Names are checked before they are used anywhere, which also keeps them
// clear of "..", empty components and anything else that could mean
// something to a file system.

// MaxNameLength bounds a repository name; the spec suggests clients keep a
// registry host plus name under 255 characters.
const MaxNameLength = 255

// ValidName reports whether name is a repository name under the spec.
func ValidName(name string) bool {
	if len(name) > MaxNameLength {
		return false
	}
	for {
		comp, rest, more := strings.Cut(name, "/")
		if !validComponent(comp) {
			return false
		}
		if !more {
			return true
		}
		name = rest
	}
}

// validComponent checks one path component: runs of [a-z0-9] joined by
// ".", "_", "__" or one or more "-".
func validComponent(c string) bool {
	i, n := 0, len(c)
	for {
		start := i
		for i < n && (c[i] >= 'a' && c[i] <= 'z' || c[i] >= '0' && c[i] <= '9') {
			i++
		}
		if i == start {
			return false // empty, or a separator where a run must be
		}
		if i == n {
			return true
		}
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < n && c[i] == '_' {
				i++
			}
		case '-':
			for i < n && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// ValidTag reports whether tag is a tag under the spec.
func ValidTag(tag string) bool {
	if len(tag) == 0 || len(tag) > 128 {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

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
