package cache

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// Listings, a repository's tags (/v2/<name>/tags/list) and a manifest's
// referrers (/v2/<name>/referrers/<digest>), are passed through to the
// origin and kept as a tag's answer is: the origin's body and the headers
// that matter (Content-Type, Link, OCI-Filters-Applied), exactly as it sent
// them, one per registry, repository, digest and query (n, last,
// artifactType).
//
//   - Asked as cacheyd, once for all concurrent requests, and kept for
//     TagTTL; while upstream cannot answer, the last answer is served up to
//     TagStaleMax past its TTL (the ladder, lookup.go).
//   - Refused as cacheyd (401, 403): asked again with the request's own
//     credentials, and that answer goes to that request only, never kept.
//   - A 404 (from a registry without the referrers API, say) asked as
//     cacheyd is returned as it is and kept for TagTTL for the requests
//     without credentials (absent.go). Any other answer of the origin (a
//     400 for a bad page) is returned as it is, not kept.
//
// A HEAD is answered as a GET is, without the body: a listing is always
// fetched whole, with a GET, which registries do not count as a pull.

// Bounds of the listing table. Past them arbitrary entries are dropped; a
// dropped listing costs one upstream request.
const (
	maxListings     = 10_000
	maxListingBytes = 64 << 20
)

// Listing is the cache's answer to a listing request.
type Listing struct {
	// MediaType is the origin's Content-Type.
	MediaType string
	// Link is the origin's Link header, the next page of a tag list, as it
	// sent it: it names the origin's path, not the client's.
	Link string
	// FiltersApplied is the origin's OCI-Filters-Applied header.
	FiltersApplied string
	// Body is the listing as the origin sent it. It may be shared: read
	// only.
	Body []byte
	// Source is SourceUpstream (asked now as cacheyd), SourceListings
	// (kept, fresh or stale) or SourcePassThrough (asked with the
	// request's credentials).
	Source Source

	// claim is the read memory Body holds (readmem.go) while it is this
	// request's alone (SourcePassThrough), until Release; nil for a
	// listing kept for everyone, which the listing table bounds.
	claim *readClaim
}

// Release gives back the memory a listing read for this request alone
// holds: call it once Body is sent, or will not be. It does nothing for a
// listing kept for everyone, and may be called more than once.
func (l *Listing) Release() { l.claim.release() }

type listKey struct {
	kind                 oci.Kind
	registry, repository string
	ref                  oci.Digest // the referrers' subject; "" for tags
	query                string     // oci.ListQuery.Encode
}

func (k listKey) String() string {
	return k.kind.String() + " " + k.registry + "/" + k.repository + "@" + string(k.ref) + "?" + k.query
}

func (k listKey) logAttrs() []any {
	return []any{"kind", k.kind.String(), "registry", k.registry, "repository", k.repository}
}

type listEntry struct {
	listing Listing // Source unset
	checked time.Time
}

func (e listEntry) answer() Listing      { return e.listing }
func (e listEntry) confirmed() time.Time { return e.checked }

// staleOK is always true: listings are not asked of peers (each replica
// asks upstream itself), so no kept listing is another replica's word.
func (e listEntry) staleOK() bool { return true }

// listingTable remembers the last answer of each listing fetched as
// cacheyd. Answers obtained with a client's credentials are never stored.
type listingTable = table[listKey, listEntry]

func newListingTable() *listingTable {
	return newTable[listKey](maxListings, maxListingBytes, func(e listEntry) int { return len(e.listing.Body) })
}

// List answers a tag list or referrers request (req.Kind KindTags or
// KindReferrers, req.List its query) by the ladder (lookup.go). Errors
// that are the origin's answer (404, 401 with its challenge, ...) are
// *oci.Error, passed on unaltered.
func (c *Cache) List(ctx context.Context, req *oci.Request) (*Listing, error) {
	if !req.Kind.IsListing() {
		return nil, fmt.Errorf("cache: cannot list %s", req.Kind)
	}
	key := listKeyOf(req)
	if err, ok := c.knownAbsent(key, req); ok {
		// Answered from the table, as a fresh listing is.
		c.countListing(key, rungFresh)
		return nil, err
	}
	l := c.listingLadder()
	listing, r, _, err := climb(ctx, c, &l, req, key)
	if err != nil {
		if ctx.Err() == nil {
			c.keepAbsent(key, req, err)
		}
		return nil, err
	}
	return listing.as(r.source(SourceListings)), nil
}

// listingLadder is how a listing climbs the ladder: fetched whole with a
// GET, kept in the listing table, counted by kind, a failure with the
// request's own credentials counted as an error.
func (c *Cache) listingLadder() ladder[listKey, listEntry, Listing] {
	return ladder[listKey, listEntry, Listing]{what: "listing", kept: c.listings, flight: &c.listFlight,
		ask: (*Cache).listingGet, read: (*Cache).readListing, keep: (*Cache).keepListing, count: (*Cache).countListing,
		countClientErrors: true}
}

func listKeyOf(req *oci.Request) listKey {
	return listKey{kind: req.Kind, registry: req.Registry, repository: req.Repository, ref: req.Reference.Digest, query: req.List.Encode()}
}

// listingGet is the GET that asks for req's listing as cacheyd. A listing
// is fetched from the registry by the replica asked, never by a peer or
// the parent (its sources are the registry only, package sources):
// FromPeer, which keeps a peer's request from a second hop, and Via, which
// finds a loop through parents, have nothing to say of it and are left
// unset.
func (*Cache) listingGet(req *oci.Request) *oci.Request {
	get := req.Lookup(http.MethodGet)
	get.FromPeer, get.Via = false, nil
	return get
}

// keepListing keeps a listing for everyone: the listing table's bound
// holds it now, rather than the read memory it was read in.
func (c *Cache) keepListing(key listKey, l *Listing, _ *oci.Response) {
	l.Release()
	l.claim = nil
	c.listings.put(key, listEntry{listing: *l, checked: time.Now()})
	c.forgetAbsent(key)
}

// countListing counts a listing's lookup. A 404 stays an error here, as
// docs/metrics.md has it: a registry without the referrers API is worth
// seeing, where a tag that is not there is routine (tags.go).
func (c *Cache) countListing(key listKey, r rung) {
	if r == rungNotFound {
		r = rungError
	}
	c.m.Listings.WithLabelValues(key.kind.String(), string(r)).Inc()
}

// as is a copy of l from source.
func (l Listing) as(source Source) *Listing {
	l.Source = source
	return &l
}

// readListing reads an origin's listing answer whole (at most
// oci.MaxListingSize) within the read memory budget, and closes its body.
// The listing holds what it claimed of the budget until Release.
func (c *Cache) readListing(req *oci.Request, resp *oci.Response) (Listing, error) {
	l := Listing{MediaType: resp.MediaType, Link: resp.Link, FiltersApplied: resp.FiltersApplied}
	if resp.Body == nil {
		return l, nil
	}
	defer resp.Body.Close()
	kind := req.Kind.String()
	w, err := c.reads.readWhole(resp.Body, req.Registry, oci.MaxListingSize, kind)
	if err != nil {
		if _, ok := oci.AsError(err); !ok {
			err = fmt.Errorf("cache: read listing: %w", err)
		}
		return Listing{}, err
	}
	if l.Body, err = w.bytes(kind); err != nil {
		w.release()
		return Listing{}, err
	}
	l.claim = w.claim
	return l, nil
}
