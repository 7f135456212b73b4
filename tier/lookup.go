package tier

import (
	"context"
	"io"
	"net/http"
	"os"

	"github.com/cacheyd/cacheyd/oci"
)

// fromTiers looks key's digest up in memory, then on disk. A manifest needs
// its media type; content known only as a blob does not answer a manifest
// request. Marked content is served as private.go says: it returns
// upstream's refusal for a private source that does not accept the
// request's credentials, and for a request elsewhere a miss, with
// key.source set so that the fill is the request's own.
func (c *Cache) fromTiers(ctx context.Context, req *oci.Request, key *fillKey) (*Object, error) {
	dg, manifest := key.digest, key.manifest
	head := req.Method == http.MethodHead
	// The memory tier only ever holds public content (see private.go).
	if e, ok := c.mem.get(dg); ok && (!manifest || e.mediaType != "") {
		c.m.Hits.WithLabelValues("memory").Inc()
		o := &Object{Digest: dg, MediaType: mediaTypeFor(kindOf(manifest), e.mediaType), Size: int64(len(e.data)), Source: SourceMemory}
		if !head {
			o.data = e.data
		}
		return o, nil
	}
	var (
		f  *os.File
		e  diskEntry
		ok bool
	)
	if head {
		e, ok = c.disk.lookup(dg)
	} else {
		f, e, ok = c.disk.open(dg)
	}
	if ok && manifest && e.mediaType == "" {
		ok = false
	}
	if ok && e.marked() {
		switch accessFor(&e, sourceOf(req)) {
		case accessElsewhere:
			key.source = sourceOf(req)
			ok = false
		case accessCheck:
			if err := c.authorize(ctx, req); err != nil {
				closeQuiet(f)
				return nil, err
			}
		}
	}
	if !ok {
		closeQuiet(f)
		return nil, nil
	}
	o := &Object{Digest: dg, MediaType: mediaTypeFor(kindOf(manifest), e.mediaType), Size: e.size, Source: SourceDisk, file: f}
	if f != nil && !e.marked() && c.mem.fits(e.size) {
		// A small object found only on disk (after a restart, or evicted
		// from memory) goes back into memory, so that the next request
		// costs no open, read and close. After an unclean stop its bytes
		// are checked here first.
		data, err := io.ReadAll(io.LimitReader(f, e.size+1))
		switch {
		case err == nil && int64(len(data)) == e.size && (e.verified || matches(dg, data)):
			closeQuiet(f)
			if !e.verified {
				c.disk.markVerified(dg)
			}
			c.mem.set(dg, memEntry{data: data, mediaType: e.mediaType})
			o.file, o.data = nil, data
		case err == nil && !e.verified:
			closeQuiet(f)
			c.disk.corrupt(dg, int64(len(data)), e.size)
			return nil, nil
		default:
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				closeQuiet(f)
				return nil, nil
			}
		}
	}
	if o.file != nil && !e.verified {
		o.disk = c.disk // checked as it is read (diskverify.go)
	}
	c.m.Hits.WithLabelValues("disk").Inc()
	return o, nil
}

// matches reports whether data is the content named by dg.
func matches(dg oci.Digest, data []byte) bool {
	h := dg.NewHash()
	h.Write(data)
	return dg.Matches(h)
}

func closeQuiet(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}
