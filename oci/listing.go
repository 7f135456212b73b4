package oci

import (
	"fmt"
	"net/url"
)

// Listings are the two read-only endpoints that answer with a list rather
// than content: a repository's tags (/v2/<name>/tags/list) and the
// referrers of a manifest (/v2/<name>/referrers/<digest>). cacheyd passes
// them through to the registry; their query is what a Request carries in
// List.

// MaxListingSize bounds a listing body, as MaxManifestSize bounds a
// manifest: Docker Hub's longest tag lists are a few hundred KiB.
const MaxListingSize = 4 << 20

// Bounds of the query values a listing request may carry.
const (
	maxListN    = 9    // digits of n: a page of up to a billion tags
	maxListLast = 1024 // bytes of last: a tag, or a registry's opaque page token (ECR's)
)

// ListQuery is what a listing request asks beyond its path. The zero value
// asks for the whole list, as the registry pages it by default.
type ListQuery struct {
	// N is the page size of a tag list (?n=), decimal digits as sent; ""
	// leaves it to the registry.
	N string
	// Last is where a tag list's page starts (?last=): after this tag, or
	// a registry's own page token, as a Link header named it; "" starts at
	// the beginning.
	Last string
	// ArtifactType filters referrers by artifact media type
	// (?artifactType=); "" asks for every referrer.
	ArtifactType string
}

// IsZero reports whether q asks for nothing beyond the path.
func (q ListQuery) IsZero() bool { return q == ListQuery{} }

// Encode is q as a URL query string (keys sorted), "" for the zero value.
// It is what goes upstream and what tells two listings apart.
func (q ListQuery) Encode() string {
	if q.IsZero() {
		return ""
	}
	v := url.Values{}
	if q.N != "" {
		v.Set("n", q.N)
	}
	if q.Last != "" {
		v.Set("last", q.Last)
	}
	if q.ArtifactType != "" {
		v.Set("artifactType", q.ArtifactType)
	}
	return v.Encode()
}

// Validate checks q for a listing of kind k: n and last belong to tag
// lists, artifactType to referrers; n is digits, last printable ASCII
// without spaces, artifactType a bare media type, each bounded. Any other
// kind takes the zero value only. Errors are *Error (400).
func (q ListQuery) Validate(k Kind) error {
	switch {
	case k != KindTags && (q.N != "" || q.Last != ""):
		return errBadQuery("n and last apply to tags/list only")
	case k != KindReferrers && q.ArtifactType != "":
		return errBadQuery("artifactType applies to referrers only")
	case len(q.N) > maxListN || !digits(q.N):
		return errBadQuery(fmt.Sprintf("n must be at most %d decimal digits", maxListN))
	case len(q.Last) > maxListLast || !visibleASCII(q.Last):
		return errBadQuery(fmt.Sprintf("last must be at most %d visible ASCII characters", maxListLast))
	case q.ArtifactType != "" && !ValidMediaType(q.ArtifactType):
		return errBadQuery("artifactType must be a media type")
	}
	return nil
}

func errBadQuery(msg string) *Error {
	return newError(400, CodeUnsupported, "query: "+msg)
}

// digits reports whether s holds decimal digits only ("" does).
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// visibleASCII reports whether s holds printable ASCII other than space
// only ("" does).
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// IsListing reports whether k is a listing: tags or referrers.
func (k Kind) IsListing() bool { return k == KindTags || k == KindReferrers }
