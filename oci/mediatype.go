package oci

import (
	"encoding/json"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MaxManifestSize is the largest manifest cacheyd reads, as containerd.
const MaxManifestSize = 4 << 20

// ManifestMediaTypes are the manifest and index media types cacheyd accepts
// from upstream. Asking for all of them makes upstream answer with the
// manifest as stored, so one cached copy serves every client.
var ManifestMediaTypes = []string{
	string(types.OCIImageIndex),
	string(types.OCIManifestSchema1),
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
	string(types.DockerManifestSchema1Signed),
	string(types.DockerManifestSchema1),
}

// BlobMediaType is the Content-Type of every blob response.
const BlobMediaType = "application/octet-stream"

// SniffManifestMediaType guesses a manifest's media type from its content,
// for the rare upstream that sends none: the mediaType field if it is a
// valid media type (see ValidMediaType), else an OCI index when it lists
// manifests, else an OCI image manifest. The answer becomes a Content-Type
// header, so text from the manifest is taken only in that bare form.
func SniffManifestMediaType(data []byte) string {
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(data, &probe) == nil && ValidMediaType(probe.MediaType) {
		return probe.MediaType
	}
	if probe.Manifests != nil {
		return string(types.OCIImageIndex)
	}
	return string(types.OCIManifestSchema1)
}

// maxMediaTypeLength bounds a media type: RFC 6838 allows 127 characters
// for each of type and subtype.
const maxMediaTypeLength = 127 + 1 + 127

// ValidMediaType reports whether s is a bare media type, type "/" subtype
// of RFC 6838's restricted-name characters, without parameters: the form
// the mediaType field of a manifest has, and safe as a header value.
func ValidMediaType(s string) bool {
	if len(s) > maxMediaTypeLength {
		return false
	}
	typ, sub, ok := strings.Cut(s, "/")
	return ok && restrictedName(typ) && restrictedName(sub)
}

// restrictedName checks RFC 6838's restricted-name: a letter or digit, then
// letters, digits and !#$&-^_.+
func restrictedName(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("!#$&-^_.+", rune(c))) {
			return false
		}
	}
	return true
}
