package cache

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// maxTags bounds the tag table. Past it an arbitrary entry is dropped: a
// dropped tag costs one upstream HEAD, nothing more.
const maxTags = 100_000

type tagKey struct{ registry, repository, tag string }

func (k tagKey) String() string { return k.registry + "/" + k.repository + ":" + k.tag }

func (k tagKey) logAttrs() []any {
	return []any{"registry", k.registry, "repository", k.repository, "tag", k.tag}
}

// descriptor is what a tag resolves to.
type descriptor struct {
	digest    oci.Digest
	mediaType string
	size      int64
}

type tagEntry struct {
	desc    descriptor
	checked time.Time // when upstream last confirmed desc
	// peer says another replica gave the answer (oci.Response.Peer): it is
	// that replica's to keep and serve stale, this one's only for the TTL.
	peer bool
}

func (e tagEntry) answer() descriptor   { return e.desc }
func (e tagEntry) confirmed() time.Time { return e.checked }
func (e tagEntry) staleOK() bool        { return !e.peer }

// tagTable remembers the last answer for each tag fetched as cacheyd.
// Answers obtained with a client's credentials are never stored.
type tagTable = table[tagKey, tagEntry]

func newTagTable() *tagTable { return newTable[tagKey, tagEntry](maxTags, 0, nil) }

// getTag answers a manifest request by tag: the tag is resolved to a digest
// (from the tag table while fresh, else with an upstream HEAD), then the
// manifest is served by digest like any immutable content.
func (c *Cache) getTag(ctx context.Context, req *oci.Request) (*Object, error) {
	asked := time.Now()
	desc, src, way, err := c.resolveTag(ctx, req)
	if err != nil {
		return nil, err
	}
	if desc.digest == "" {
		// Upstream names no digest on HEAD: only a GET can tell. Such an
		// answer is never kept, so it was asked now, and way is decided.
		return c.getTagWithoutDigest(ctx, req, desc, way, asked)
	}
	if !accepts(req.Accept, desc.mediaType) {
		return c.fetchAccepting(ctx, req)
	}
	if req.Method == http.MethodHead {
		return &Object{Digest: desc.digest, MediaType: mediaTypeFor(oci.KindManifest, desc.mediaType), Size: desc.size, Source: src}, nil
	}
	return c.getDigest(ctx, req.ByDigest(desc.digest))
}

// resolveTag finds what a tag points to now, by the ladder (lookup.go):
// concurrent lookups of one tag share one upstream HEAD. When upstream
// fails (unreachable, 5xx, 429, timeout) the last known answer is served
// for up to TagStaleMax past its TTL, unless a peer gave it; a 401 or 404
// is a real answer and is returned. way is the route the lookup was
// decided on, unless the answer was fresh.
func (c *Cache) resolveTag(ctx context.Context, req *oci.Request) (descriptor, Source, source, error) {
	l := c.tagLadder()
	d, r, way, err := climb(ctx, c, &l, req, tagKeyOf(req))
	if err != nil {
		return descriptor{}, 0, source{}, err
	}
	return d, r.source(SourceTags), way, nil
}

// tagLadder is how a tag climbs the ladder: resolved with a HEAD, kept in
// the tag table unless the answer names no digest, never served stale
// from a peer's answer (tagEntry.staleOK).
func (c *Cache) tagLadder() ladder[tagKey, tagEntry, descriptor] {
	return ladder[tagKey, tagEntry, descriptor]{what: "tag", kept: c.tags, flight: &c.tagFlight,
		ask: (*Cache).tagHead, read: (*Cache).tagAnswer, keep: (*Cache).keepTag, count: (*Cache).countTag}
}

func tagKeyOf(req *oci.Request) tagKey {
	return tagKey{req.Registry, req.Repository, req.Reference.Tag}
}

// tagHead is the HEAD that resolves req's tag as cacheyd: every client of
// the tag shares it, so it takes nothing of req's client (oci's Lookup).
func (*Cache) tagHead(req *oci.Request) *oci.Request { return req.Lookup(http.MethodHead) }

// tagAnswer is what the origin's answer to a tag's HEAD says the tag is.
func (*Cache) tagAnswer(_ *oci.Request, resp *oci.Response) (descriptor, error) {
	return descriptor{digest: resp.Digest, mediaType: resp.MediaType, size: resp.Size}, nil
}

// keepTag keeps what a tag is, if its answer named a digest.
func (c *Cache) keepTag(key tagKey, d *descriptor, resp *oci.Response) {
	if d.digest != "" {
		c.tags.put(key, tagEntry{desc: *d, checked: time.Now(), peer: resp.Peer})
	}
}

func (c *Cache) countTag(_ tagKey, r rung) { c.m.TagLookups.WithLabelValues(string(r)).Inc() }

// getTagWithoutDigest serves a tag whose upstream HEAD carried no
// Docker-Content-Digest: only the manifest itself tells what the tag is. A
// client HEAD gets upstream's headers. A GET is asked upstream as cacheyd
// once for every request of the tag at the time (readTag, shared as a tag's
// HEAD is), and its bytes are kept under their digest; every request is
// then served by that digest, from the tiers that hold it, so that none
// holds a copy of its own. When upstream refuses cacheyd, each request
// with credentials gets its own answer, streamed and not kept. Every
// request of the GET goes the way the tag's HEAD was decided (way): the
// lookup plans its sources once. asked is when the request began.
func (c *Cache) getTagWithoutDigest(ctx context.Context, req *oci.Request, desc descriptor, way source, asked time.Time) (*Object, error) {
	if req.Method == http.MethodHead {
		return &Object{MediaType: mediaTypeFor(oci.KindManifest, desc.mediaType), Size: desc.size, Source: SourceUpstream}, nil
	}
	key := tagKeyOf(req)
	get := req.Lookup(http.MethodGet)
	get.Route = way.key
	v, err := c.shared(ctx, &c.tagFlight, "GET "+key.String()+"\x00"+way.key, func(ctx context.Context) (any, error) {
		// A GET that ended since this request began (after its HEAD,
		// before this lookup) answers it too: no other is needed.
		if last, ok := c.tags.get(key); ok && last.desc.digest != "" && last.checked.After(asked) {
			return last.desc, nil
		}
		return c.readTag(ctx, way, get, key)
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case oci.Refused(err) && req.Authorization != "":
		resp, _, err := c.asClient(ctx, way.from, req, nil, err)
		if err != nil {
			return nil, err
		}
		return c.passThroughResponse(req, resp), nil
	case err != nil:
		return nil, err
	}
	return c.getDigest(ctx, req.ByDigest(v.(descriptor).digest))
}

// readTag GETs a tag's manifest as cacheyd, reads it whole within the read
// memory budget (readmem.go), and keeps it under the digest of its bytes:
// on disk, in memory when it fits, and as the tag's answer. The budget is
// given back once the bytes are kept. A manifest whose registry named no
// media type is kept with the one its content names, so that it is served
// as a manifest. It asks way, the route of the tag's lookup.
func (c *Cache) readTag(ctx context.Context, way source, get *oci.Request, key tagKey) (descriptor, error) {
	resp, err := way.from.Fetch(ctx, get)
	if err != nil {
		return descriptor{}, err
	}
	defer resp.Body.Close()
	w, err := c.reads.readWhole(resp.Body, get.Registry, oci.MaxManifestSize, "manifest")
	if err != nil {
		if _, ok := oci.AsError(err); !ok {
			err = fmt.Errorf("cache: read manifest %s: %w", key.tag, err)
		}
		return descriptor{}, err
	}
	defer w.release()
	d := descriptor{digest: w.digest(), mediaType: resp.MediaType, size: w.Len()}
	// The manifest in one piece, a copy claimed from the budget: to name
	// its media type (without room, the read fails), or for the memory tier
	// (without room, it is not kept there).
	var data []byte
	switch {
	case d.mediaType == "":
		if data, err = w.bytes("manifest"); err != nil {
			return descriptor{}, err
		}
		d.mediaType = oci.SniffManifestMediaType(data)
	case c.mem.Fits(d.size):
		data, _ = w.bytes("memory")
	}
	e := tier.Entry{Digest: d.digest, Size: d.size, MediaType: d.mediaType, Public: []string{sourceOf(get)}}
	if held, err := c.disk.Put(ctx, e, w.reader()); err != nil {
		// Served from memory if it is kept there, else by a fill of its
		// digest, which streams it when the disk cannot take it.
		c.log.Warn("caching manifest failed", "digest", d.digest.Short(), "err", err)
	} else {
		e = held
		c.tellKeepers(e)
	}
	c.keepInMemory(e, data)
	c.keepTag(key, &d, resp)
	return d, nil
}
