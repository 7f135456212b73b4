package oci

import (
	"encoding/json"

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
// for the rare upstream that sends none: the mediaType field if present,
// else an OCI index when it lists manifests, else an OCI image manifest.
func SniffManifestMediaType(data []byte) string {
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.MediaType != "" {
		return probe.MediaType
	}
	if probe.Manifests != nil {
		return string(types.OCIImageIndex)
	}
	return string(types.OCIManifestSchema1)
}
