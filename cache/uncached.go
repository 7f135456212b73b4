package cache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

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
	up := *req
	up.Method, up.Offset, up.Authorization = http.MethodGet, 0, ""
	resp, err := c.origin.Fetch(ctx, &up)
	if err != nil {
		return nil, err
	}
	return &Object{
		Digest: req.Reference.Digest, MediaType: mediaTypeFor(req.Kind, resp.MediaType), Size: resp.Size,
		Source: SourceUncached, ctx: ctx, pass: &verifyingReader{r: resp.Body, h: req.Reference.Digest.NewHash(), want: req.Reference.Digest, size: resp.Size},
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

// verifyingReader passes a body through while hashing it. Like a fill, it
// always holds back the newest byte until the body has ended and its size
// and digest are checked, so content streamed without a pending file still
// cannot complete wrong: a bad body ends in an error one byte short.
type verifyingReader struct {
	r     io.ReadCloser
	h     hash.Hash
	want  oci.Digest
	size  int64 // -1 unknown
	n     int64 // bytes read from r
	carry []byte
	held  [1]byte
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) <= len(v.carry) {
		// Only the held byte fits, and it may go only once the byte after
		// it, or the end, has been read (a window short of the end asks for
		// its last byte so): read through a buffer with room for both.
		var buf [2]byte
		n, err := v.Read(buf[:])
		if n > len(p) {
			// The end came, verified, with both: hand out the first and hold
			// the other; the next read meets the end again.
			v.held[0] = buf[1]
			v.carry = v.held[:]
			n, err = len(p), nil
		}
		copy(p, buf[:n])
		return n, err
	}
	off := copy(p, v.carry)
	v.carry = nil
	n, err := v.r.Read(p[off:])
	v.h.Write(p[off : off+n])
	v.n += int64(n)
	total := off + n
	switch {
	case errors.Is(err, io.EOF):
		if v.size >= 0 && v.n != v.size {
			return max(total-1, 0), fmt.Errorf("body ended at %d of %d bytes: %w", v.n, v.size, io.ErrUnexpectedEOF)
		}
		if !v.want.Matches(v.h) {
			return max(total-1, 0), fmt.Errorf("digest mismatch: content is not %s", v.want.Short())
		}
		return total, io.EOF
	case err != nil:
		return max(total-1, 0), err
	case total == 0:
		return 0, nil
	}
	v.held[0] = p[total-1]
	v.carry = v.held[:]
	return total - 1, nil
}

func (v *verifyingReader) Close() error { return v.r.Close() }
