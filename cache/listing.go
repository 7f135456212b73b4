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
//     TagStaleMax past its TTL (lookup.go).
//   - Refused as cacheyd (401, 403): asked again with the request's own
//     credentials, and that answer goes to that request only, never kept.
//   - Any other answer of the origin (a 404 from a registry without the
//     referrers API, a 400 for a bad page) is returned as it is, not kept.
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

type listEntry struct {
	listing Listing // Source unset
	checked time.Time
}

// listingTable remembers the last answer of each listing fetched as
// cacheyd. Answers obtained with a client's credentials are never stored.
type listingTable = table[listKey, listEntry]

func newListingTable() *listingTable {
	return newTable[listKey](maxListings, maxListingBytes, func(e listEntry) int { return len(e.listing.Body) })
}

// List answers a tag list or referrers request (req.Kind KindTags or
// KindReferrers, req.List its query). Errors that are the origin's answer
// (404, 401 with its challenge, ...) are *oci.Error, passed on unaltered.
func (c *Cache) List(ctx context.Context, req *oci.Request) (*Listing, error) {
	if !req.Kind.IsListing() {
		return nil, fmt.Errorf("cache: cannot list %s", req.Kind)
	}
	kind := req.Kind.String()
	key := listKey{kind: req.Kind, registry: req.Registry, repository: req.Repository, ref: req.Reference.Digest, query: req.List.Encode()}
	last, known := c.listings.get(key)
	if known && time.Since(last.checked) < c.cfg.TagTTL {
		c.m.Listings.WithLabelValues(kind, "fresh").Inc()
		return last.listing.as(SourceListings), nil
	}
	get := oci.Request{Method: http.MethodGet, Kind: req.Kind, Registry: req.Registry, Repository: req.Repository,
		Reference: req.Reference, List: req.List}
	v, err := c.shared(ctx, &c.listFlight, key.String(), func(ctx context.Context) (any, error) {
		resp, err := c.fetchLookup(ctx, &get, known)
		if err != nil {
			return nil, err
		}
		l, err := c.readListing(&get, resp)
		if err != nil {
			return nil, err
		}
		// Kept for everyone: the listing table's bound holds it now.
		l.Release()
		l.claim = nil
		c.listings.put(key, listEntry{listing: *l, checked: time.Now()})
		return l, nil
	})
	if err != nil && ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if err == nil {
		c.m.Listings.WithLabelValues(kind, "revalidated").Inc()
		return v.(*Listing).as(SourceUpstream), nil
	}
	if refused(err) && req.Authorization != "" {
		withAuth := get
		withAuth.Authorization = req.Authorization
		resp, _, perr := c.asClient(ctx, c.origin, &withAuth, nil, err)
		var l *Listing
		if perr == nil {
			l, perr = c.readListing(&withAuth, resp)
		}
		if perr != nil {
			c.m.Listings.WithLabelValues(kind, "error").Inc()
			return nil, perr
		}
		c.m.Listings.WithLabelValues(kind, "passthrough").Inc()
		return l.as(SourcePassThrough), nil
	}
	if known && c.servesStale(last.checked, err) {
		c.m.Listings.WithLabelValues(kind, "stale").Inc()
		c.log.Warn("serving stale listing", "kind", kind, "registry", req.Registry, "repository", req.Repository,
			"age", time.Since(last.checked).Round(time.Second), "err", err)
		return last.listing.as(SourceListings), nil
	}
	c.m.Listings.WithLabelValues(kind, "error").Inc()
	return nil, err
}

// as is a copy of l from source.
func (l Listing) as(source Source) *Listing {
	l.Source = source
	return &l
}

// readListing reads an origin's listing answer whole (at most
// oci.MaxListingSize) within the read memory budget, and closes its body.
// The listing holds what it claimed of the budget until Release.
func (c *Cache) readListing(req *oci.Request, resp *oci.Response) (*Listing, error) {
	l := &Listing{MediaType: resp.MediaType, Link: resp.Link, FiltersApplied: resp.FiltersApplied}
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
		return nil, err
	}
	if l.Body, err = w.bytes(kind); err != nil {
		w.release()
		return nil, err
	}
	l.claim = w.claim
	return l, nil
}
