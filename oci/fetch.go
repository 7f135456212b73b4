package oci

import (
	"io"
	"time"
)

// Request asks an origin (an upstream registry, or another cacheyd) for a
// manifest, a blob or a listing (tags, referrers). It is plain data: the
// server builds it from a client request, the tiers pass it on, the
// upstream client turns it into HTTP.
type Request struct {
	// Method is "GET" or "HEAD". A HEAD never becomes a GET upstream: Docker
	// Hub counts manifest GETs against pull limits, not HEADs.
	Method string
	// Kind is KindManifest, KindBlob, KindTags or KindReferrers.
	Kind Kind
	// Registry is the canonical registry name (see NormalizeRegistry).
	Registry string
	// Repository is the name within the registry (library/ already added
	// for one-component Docker Hub names).
	Repository string
	// Reference is the manifest's tag or digest, the blob's digest, or the
	// digest whose referrers are listed; empty for a tag list.
	Reference Reference
	// List is a listing's query (tags: n, last; referrers: artifactType).
	List ListQuery
	// Window, on a GET, is the bytes of the object asked for: a Range of
	// "bytes=Offset-" (Length zero), "bytes=Offset-(Offset+Length-1)", or
	// "bytes=-Suffix" when Offset and Length are zero (a window at the end
	// of an object whose size is not known yet), to resume a fill or fetch
	// a chunk. The zero value is the whole object.
	Window
	// Wants, on a request to a cache, is the window its client will read
	// first (its Range), so that a cold fill can fetch those bytes first.
	// Origins ignore it. The zero value is the whole object.
	Wants Window
	// Accept lists the manifest media types the caller takes. Empty means
	// every type in ManifestMediaTypes.
	Accept []string
	// Authorization is the client's own Authorization header, forwarded
	// unaltered. Empty means fetch as cacheyd itself.
	Authorization string
	// FromPeer marks a request another replica of the cluster sent on its
	// miss (HopHeader): it is fetched from this replica's own origin, never
	// from a peer again, so a request makes at most one hop. False is a
	// client's request.
	FromPeer bool
	// Via holds the instance ids of the cacheyds the request came through
	// (ViaHeader), oldest first; nil for a client's own request. Whoever
	// builds a request from another passes it on, so that a loop of
	// parents is found wherever it closes.
	Via []string
	// Route is where the origin said (cache.Router) it would send the work
	// this request is for, when that work started: the cache sets it on a
	// fill's first request and on every resume, and on a tag lookup, so that
	// the origin keeps to what the work was keyed by. Empty means the
	// origin's own way, or an origin that does not route.
	Route string
	// Cached, on a lookup (a tag's), says that the cache holds an answer
	// it would serve stale should the lookup fail: a source of last resort
	// (an alternate asked for a tag, --alternate-tags) is not asked, the
	// answer kept is better. The cache sets it on a lookup's request; the
	// requests of the same work keep it, as they keep Route. False: nothing
	// to fall back on, or no lookup.
	Cached bool
}

// Window is bytes of an object: Length bytes from Offset (Length zero: to
// the end), or the last Suffix bytes. The zero value is the whole object.
type Window struct {
	// Offset is the first byte; zero means from the start.
	Offset int64
	// Length bounds the window to at most Length bytes from Offset; zero
	// means to the end.
	Length int64
	// Suffix is the last Suffix bytes of the object, when Offset and
	// Length are zero.
	Suffix int64
}

// Response is an origin's answer with content.
type Response struct {
	// Digest is upstream's Docker-Content-Digest, or "" when it sent none.
	Digest Digest
	// MediaType is upstream's Content-Type (manifests, listings) or empty.
	MediaType string
	// Size is the object's full size in bytes, or -1 when unknown.
	Size int64
	// Offset is the byte of the object where Body starts: where the range
	// asked for starts if upstream honoured it, else 0.
	Offset int64
	// End is the byte of the object after the body's last: Size when the
	// body runs to the end of the object, -1 when that is unknown too. Zero
	// (not said) means the body runs to the end.
	End int64
	// Link is a listing's Link header as upstream sent it: where the next
	// page of a tag list is. Empty when there is none.
	Link string
	// FiltersApplied is a referrers answer's OCI-Filters-Applied header:
	// the filters (artifactType) the registry applied. Empty when none.
	FiltersApplied string
	// Body is the content from Offset on; nil for a HEAD. The caller closes it.
	Body io.ReadCloser
	// Peer says another replica of the cluster answered, not the registry
	// (nor the parent): its word on a tag is kept for the tag TTL only,
	// never served stale.
	Peer bool
	// Idle is how long Body may send nothing before its reader abandons
	// it as stalled; zero means the reader's own default. Another cacheyd
	// relaying a registry that stalls resumes it after its own idle
	// timeout, so its bodies are given longer before it is blamed.
	Idle time.Duration
}
