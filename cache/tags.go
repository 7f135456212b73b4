package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
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

// tagTable remembers the last answer for each tag fetched as cacheyd.
// Answers obtained with a client's credentials are never stored.
type tagTable = table[tagKey, tagEntry]

func newTagTable() *tagTable { return newTable[tagKey, tagEntry](maxTags, 0, nil) }

// getTag answers a manifest request by tag: the tag is resolved to a digest
// (from the tag table while fresh, else with an upstream HEAD), then the
// manifest is served by digest like any immutable content.
func (c *Cache) getTag(ctx context.Context, req *oci.Request) (*Object, error) {
	desc, src, err := c.resolveTag(ctx, req)
	if err != nil {
		return nil, err
	}
	if desc.digest == "" {
		// Upstream names no digest on HEAD: only a GET can tell.
		return c.getTagWithoutDigest(ctx, req, desc)
	}
	if !accepts(req.Accept, desc.mediaType) {
		return c.fetchAccepting(ctx, req)
	}
	if req.Method == http.MethodHead {
		return &Object{Digest: desc.digest, MediaType: mediaTypeFor(oci.KindManifest, desc.mediaType), Size: desc.size, Source: src}, nil
	}
	byDigest := *req
	byDigest.Reference = oci.Reference{Digest: desc.digest}
	return c.getDigest(ctx, &byDigest)
}

// resolveTag finds what a tag points to now. Concurrent lookups of one tag
// share one upstream HEAD. When upstream fails (unreachable, 5xx, 429,
// timeout) the last known answer is served for up to TagStaleMax past its
// TTL; a 401 or 404 is a real answer and is returned.
func (c *Cache) resolveTag(ctx context.Context, req *oci.Request) (descriptor, Source, error) {
	key := tagKey{req.Registry, req.Repository, req.Reference.Tag}
	last, known := c.tags.get(key)
	if known && time.Since(last.checked) < c.cfg.TagTTL {
		c.m.TagLookups.WithLabelValues("fresh").Inc()
		return last.desc, SourceTags, nil
	}
	head := &oci.Request{Method: http.MethodHead, Kind: oci.KindManifest, Registry: req.Registry,
		Repository: req.Repository, Reference: req.Reference, FromPeer: req.FromPeer, Via: req.Via}
	// Lookups routed to different places are not shared (see Router).
	head.Route = c.route(head)
	v, err := c.shared(ctx, &c.tagFlight, key.String()+"\x00"+head.Route, func(ctx context.Context) (any, error) {
		resp, err := c.fetchLookup(ctx, head, known)
		if err != nil {
			return descriptor{}, err
		}
		d := descriptor{digest: resp.Digest, mediaType: resp.MediaType, size: resp.Size}
		if d.digest != "" {
			c.tags.put(key, tagEntry{desc: d, checked: time.Now(), peer: resp.Peer})
		}
		return d, nil
	})
	if err != nil && ctx.Err() != nil {
		return descriptor{}, 0, context.Cause(ctx)
	}
	if err == nil {
		c.m.TagLookups.WithLabelValues("revalidated").Inc()
		return v.(descriptor), SourceUpstream, nil
	}
	if refused(err) && req.Authorization != "" {
		head := &oci.Request{Method: http.MethodHead, Kind: oci.KindManifest, Registry: req.Registry,
			Repository: req.Repository, Reference: req.Reference, Authorization: req.Authorization, FromPeer: req.FromPeer, Via: req.Via}
		resp, _, perr := c.asClient(ctx, c.origin, head, nil, err)
		if perr != nil {
			return descriptor{}, 0, perr
		}
		c.m.TagLookups.WithLabelValues("passthrough").Inc()
		return descriptor{digest: resp.Digest, mediaType: resp.MediaType, size: resp.Size}, SourcePassThrough, nil
	}
	if known && !last.peer && c.servesStale(last.checked, err) {
		c.m.TagLookups.WithLabelValues("stale").Inc()
		c.log.Warn("serving stale tag", "registry", req.Registry, "repository", req.Repository,
			"tag", req.Reference.Tag, "age", time.Since(last.checked).Round(time.Second), "err", err)
		return last.desc, SourceTags, nil
	}
	c.m.TagLookups.WithLabelValues("error").Inc()
	return descriptor{}, 0, err
}

// getTagWithoutDigest serves a tag whose upstream HEAD carried no
// Docker-Content-Digest. A client HEAD gets upstream's headers; a GET reads
// the manifest (at most 4 MiB), computes its digest and caches it.
func (c *Cache) getTagWithoutDigest(ctx context.Context, req *oci.Request, desc descriptor) (*Object, error) {
	if req.Method == http.MethodHead {
		return &Object{MediaType: mediaTypeFor(oci.KindManifest, desc.mediaType), Size: desc.size, Source: SourceUpstream}, nil
	}
	resp, private, err := c.fetchAs(ctx, c.origin, req)
	if err != nil {
		return nil, err
	}
	if private {
		return c.passThroughResponse(req, resp), nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, oci.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("cache: read manifest %s: %w", req.Reference.Tag, err)
	}
	if len(data) > oci.MaxManifestSize {
		return nil, oci.ErrTooLarge("manifest exceeds 4 MiB")
	}
	dg := oci.FromBytes(data)
	e := tier.Entry{Digest: dg, Size: int64(len(data)), MediaType: resp.MediaType, Public: []string{sourceOf(req)}}
	if held, err := c.disk.Put(ctx, e, bytes.NewReader(data)); err != nil {
		c.log.Warn("caching manifest failed", "digest", dg.Short(), "err", err)
	} else {
		c.keepInMemory(held, data)
	}
	c.tags.put(tagKey{req.Registry, req.Repository, req.Reference.Tag},
		tagEntry{desc: descriptor{digest: dg, mediaType: resp.MediaType, size: int64(len(data))}, checked: time.Now()})
	return &Object{Digest: dg, MediaType: mediaTypeFor(oci.KindManifest, resp.MediaType), Size: int64(len(data)), Source: SourceFillNew, data: data}, nil
}
