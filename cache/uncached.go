package cache

import (
	"context"
	"errors"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// head answers a HEAD for content no tier holds: from a fill in flight if
// there is one, else with an upstream HEAD (never a GET).
func (c *Cache) head(ctx context.Context, req *oci.Request, key fillKey) (*Object, error) {
	c.mu.Lock()
	f := c.fills[key]
	c.mu.Unlock()
	if f != nil {
		err := c.waitAnswer(ctx, f)
		if err == nil {
			c.m.FillsJoined.Inc()
			return &Object{Digest: key.digest, MediaType: mediaTypeFor(req.Kind, f.mediaType), Size: f.Size(), Source: SourceFillJoined}, nil
		}
		if errors.Is(err, errAnswerTimeout) || ctx.Err() != nil {
			return nil, err
		}
	}
	resp, private, err := c.fetchAs(ctx, c.origin, req)
	if err != nil {
		return nil, err
	}
	src := SourceUpstream
	if private {
		src = SourcePassThrough
	}
	return &Object{Digest: key.digest, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size, Source: src}, nil
}

// passThroughResponse streams what upstream gave the client's own
// credentials. It is not cached: cacheyd could not fetch it as itself, so it
// is not public.
func (c *Cache) passThroughResponse(req *oci.Request, resp *oci.Response) *Object {
	c.m.PassThrough.WithLabelValues(req.Kind.String()).Inc()
	dg := req.Reference.Digest
	if dg == "" {
		dg = resp.Digest
	}
	return &Object{
		Digest: dg, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size,
		Source: SourcePassThrough, pass: resp.Body, passOffset: resp.Offset,
	}
}

// streamUncached streams content from upstream as cacheyd without keeping
// it, for when the disk tier cannot take it (no room in the budget, or a
// failing file system). Each such request is its own upstream fetch, and
// its bytes are still verified.
func (c *Cache) streamUncached(ctx context.Context, req *oci.Request, cause error) (*Object, error) {
	c.m.Uncached.WithLabelValues(uncachedReason(cause)).Inc()
	resp, err := c.origin.Fetch(ctx, req.Whole().AsCacheyd())
	if err != nil {
		return nil, err
	}
	return &Object{
		Digest: req.Reference.Digest, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size,
		Source: SourceUncached, ctx: ctx, pass: oci.NewVerifyingReader(resp.Body, req.Reference.Digest, resp.Size, nil),
		passOffset: resp.Offset,
	}, nil
}

// uncachedReason labels why content was not kept: "budget" when the disk
// budget had no room for it beside the fills in flight, "disk" when the file
// system failed (full, read-only, an I/O error).
func uncachedReason(err error) string {
	if errors.Is(err, tier.ErrNoRoom) {
		return "budget"
	}
	return "disk"
}
