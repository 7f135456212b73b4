package cache

import (
	"context"
	"net/http"

	"github.com/cacheyd/cacheyd/oci"
)

// accepts reports whether a client's Accept list takes mediaType. An empty
// list, "*/*" and "application/*" take anything, as with HTTP content
// negotiation; containerd lists every manifest type it knows.
func accepts(accept []string, mediaType string) bool {
	if len(accept) == 0 || mediaType == "" {
		return true
	}
	for _, a := range accept {
		if a == mediaType || a == "*/*" || a == "application/*" {
			return true
		}
	}
	return false
}

// fetchAccepting asks upstream for a manifest with the client's own Accept
// list, for a client that does not take the media type cacheyd holds (an
// old client that wants a single-platform manifest where the tag is an
// index, say). Upstream decides what such a client gets, as it would without
// cacheyd; the answer is streamed and not cached, because it depends on the
// client's Accept rather than only on the digest or tag.
func (c *Cache) fetchAccepting(ctx context.Context, req *oci.Request) (*Object, error) {
	resp, _, err := c.fetchAs(ctx, c.origin, req)
	if err != nil {
		return nil, err
	}
	obj := &Object{Digest: resp.Digest, MediaType: mediaTypeFor(oci.KindManifest, resp.MediaType), Size: resp.Size, Source: SourceUpstream, ctx: ctx}
	if req.Method != http.MethodHead {
		obj.pass, obj.passOffset = resp.Body, resp.Offset
	}
	return obj, nil
}
