package origintest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// Origin is the fake registry. Its zero value is not usable: use New. It
// is safe for concurrent use.
type Origin struct {
	mu       sync.Mutex // guards the maps below
	objects  map[oci.Digest]object
	tags     map[string]oci.Digest
	listings map[string]Listing // by listingKey
	calls    map[string]int     // "GET blob sha256:..." → count

	bodies Bodies // every GET body handed out
}

type object struct {
	data      []byte
	mediaType string
}

// New returns an empty fake origin.
func New() *Origin {
	return &Origin{objects: map[oci.Digest]object{}, tags: map[string]oci.Digest{}, listings: map[string]Listing{}, calls: map[string]int{}}
}

// Listing is a tag list or referrers answer of the origin.
type Listing struct {
	Body                            []byte
	MediaType, Link, FiltersApplied string
}

// ListRef is how Count names a listing: the digest whose referrers are
// listed ("" for a tag list), "?" and the query.
func ListRef(ref string, q oci.ListQuery) string { return ref + "?" + q.Encode() }

func listingKey(k oci.Kind, ref string, q oci.ListQuery) string {
	return k.String() + " " + ListRef(ref, q)
}

// AddListing makes the origin answer l to a listing of kind k (KindTags,
// KindReferrers) for ref (the referrers' digest, "" for tags) and query q;
// other listings are 404 NAME_UNKNOWN.
func (o *Origin) AddListing(k oci.Kind, ref string, q oci.ListQuery, l Listing) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listings[listingKey(k, ref, q)] = l
}

// Add holds data (with a manifest's media type, or "") and returns its digest.
func (o *Origin) Add(data []byte, mediaType string) oci.Digest {
	dg := oci.FromBytes(data)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.objects[dg] = object{data, mediaType}
	return dg
}

// Tag points tag at dg.
func (o *Origin) Tag(tag string, dg oci.Digest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tags[tag] = dg
}

// Remove forgets tag and the object dg, as a registry that deleted them.
func (o *Origin) Remove(tag string, dg oci.Digest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.tags, tag)
	delete(o.objects, dg)
}

// Count reports how often method was asked for kind ref (a digest or tag).
func (o *Origin) Count(method string, k oci.Kind, ref string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[method+" "+k.String()+" "+ref]
}

// OpenBodies reports how many GET bodies the origin handed out that were
// not closed yet: zero once every reader of them is done, unless one leaked.
func (o *Origin) OpenBodies() int { return o.bodies.Open() }

// Fetch answers req as a registry would: the object by digest or tag, the
// window its Range asks for (416 past the end), a HEAD without a body, and
// 404 with the kind's code for what it does not hold.
func (o *Origin) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	ref := req.Reference.String()
	if req.Kind.IsListing() {
		ref = ListRef(ref, req.List)
	}
	o.calls[req.Method+" "+req.Kind.String()+" "+ref]++
	dg := req.Reference.Digest
	if !req.Reference.IsDigest() {
		dg = o.tags[req.Reference.Tag]
	}
	obj, ok := o.objects[dg]
	listing, listed := o.listings[listingKey(req.Kind, req.Reference.String(), req.List)]
	if req.Kind.IsListing() {
		obj, ok = object{listing.Body, listing.MediaType}, listed
	}
	o.mu.Unlock()
	if !ok {
		code := oci.CodeBlobUnknown
		switch {
		case req.Kind == oci.KindManifest:
			code = oci.CodeManifestUnknown
		case req.Kind.IsListing():
			code = oci.CodeNameUnknown
		}
		return nil, &oci.Error{Status: http.StatusNotFound, Code: code, Message: "unknown"}
	}
	size := int64(len(obj.data))
	resp := &oci.Response{Digest: dg, MediaType: obj.mediaType, Size: size, End: size}
	if req.Kind.IsListing() {
		resp.Digest, resp.Link, resp.FiltersApplied = "", listing.Link, listing.FiltersApplied
	}
	if req.Method == http.MethodHead {
		return resp, nil
	}
	start, end := req.Offset, size
	switch {
	case req.Suffix > 0:
		start = max(size-req.Suffix, 0)
	case req.Length > 0:
		end = min(start+req.Length, size)
	}
	if start > size || (start == size && (req.Offset > 0 || req.Length > 0)) {
		// A range that starts at or past the end, as RFC 9110 has it
		// (a GET of an empty object without one is no range).
		return nil, &oci.Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid, Message: "range"}
	}
	resp.Offset, resp.End = start, end
	resp.Body = o.bodies.Track(io.NopCloser(bytes.NewReader(obj.data[start:end])))
	return resp, nil
}
