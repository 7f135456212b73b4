package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cacheyd/cacheyd/oci"
)

// Source says where an answer came from, for the access log and metrics.
type Source uint8

const (
	SourceMemory      Source = iota + 1 // memory tier hit
	SourceDisk                          // disk tier hit
	SourceFillJoined                    // streamed a fill another request started
	SourceFillNew                       // started a fill and streams it
	SourcePassThrough                   // streamed from upstream with the client's credentials, not cached
	SourceUpstream                      // a HEAD answered by an upstream HEAD
	SourceUncached                      // streamed from upstream as cacheyd, not cached: the disk could not take it
	SourceTags                          // a HEAD by tag answered from the tag table
	SourceListings                      // a tag list or referrers answered from the listing table
)

// String names the source ("memory", "disk", "joined", "fill",
// "passthrough", "upstream", "uncached", "tags", "listings").
func (s Source) String() string {
	switch s {
	case SourceMemory:
		return "memory"
	case SourceDisk:
		return "disk"
	case SourceFillJoined:
		return "joined"
	case SourceFillNew:
		return "fill"
	case SourcePassThrough:
		return "passthrough"
	case SourceUpstream:
		return "upstream"
	case SourceUncached:
		return "uncached"
	case SourceTags:
		return "tags"
	case SourceListings:
		return "listings"
	}
	return "none"
}

// Object is the cache's answer to one request: what the content is, where it
// came from, and (for a GET) a way to read it.
//
// The caller either takes the body with Body, which hands over every
// resource the Object holds to the returned reader, or calls Close. Both are
// safe to call more than once; Close after Body does nothing.
type Object struct {
	Digest    oci.Digest
	MediaType string
	// Size is the object's full size in bytes; -1 only for a pass-through
	// whose upstream sent no length.
	Size   int64
	Source Source

	ctx  context.Context // the request's; bounds waiting on a fill
	data []byte          // memory hit
	file HeldFile        // disk hit (owned until Body or Close)
	fill *fill           // a fill in flight (one reference owned until Body or Close)
	pass io.ReadCloser   // pass-through body starting at passOffset
	// passOffset is the byte of the object where pass starts.
	passOffset int64
	taken      bool
}

// HasBody reports whether the object carries content (false for HEAD).
func (o *Object) HasBody() bool {
	return o.data != nil || o.file != nil || o.fill != nil || o.pass != nil
}

// Bytes returns the content of a memory hit, or nil for any other source.
// The slice is shared and must not be modified.
func (o *Object) Bytes() []byte { return o.data }

// Body returns a reader of length bytes from offset (length -1: to the end).
// For a whole-object read of a disk hit it returns the *os.File itself, so an
// HTTP server can use sendfile; for a window of a disk hit, a reader with a
// method File() (*os.File, error) that gives the file positioned at the
// window, for the same purpose. Reading a fill in flight blocks until the
// bytes are written and fails if the fill fails; the last byte of the whole
// object is released only after its digest is verified, while a window is
// answered as soon as its bytes are in (not verified against the object's
// digest, like a registry's own answer to a Range).
func (o *Object) Body(offset, length int64) (io.ReadCloser, error) {
	if o.taken {
		return nil, errors.New("cache: object body already taken")
	}
	if o.Size >= 0 {
		if offset < 0 || offset > o.Size {
			return nil, fmt.Errorf("cache: offset %d outside object of %d bytes", offset, o.Size)
		}
		if length < 0 || offset+length > o.Size {
			length = o.Size - offset
		}
	}
	o.taken = true
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	switch {
	case o.data != nil:
		return io.NopCloser(bytes.NewReader(o.data[offset : offset+length])), nil
	case o.file != nil:
		f := o.file
		o.file = nil
		return f.Section(ctx, offset, length)
	case o.fill != nil:
		f := o.fill
		o.fill = nil // the reader now holds the reference
		// The whole object waits for the verdict before its last byte; a
		// window is answered as soon as its bytes are in, unverified, as
		// the registry's own Range answer would be.
		return f.NewReader(ctx, offset, length, false), nil
	case o.pass != nil:
		r := o.pass
		o.pass = nil
		return newSkipReader(r, offset-o.passOffset, length), nil
	}
	return nil, errors.New("cache: object has no body")
}

// Windows is Body for several windows at once (offset and length each,
// within the object), for a multipart answer: a reader for each, which the
// caller closes. Content that can be read only once and in order (a
// pass-through, an uncached stream) has no windows: errors.ErrUnsupported,
// and the object is still the caller's to read or close.
func (o *Object) Windows(ws [][2]int64) ([]io.ReadCloser, error) {
	switch {
	case o.taken:
		return nil, errors.New("cache: object body already taken")
	case o.pass != nil:
		return nil, errors.ErrUnsupported
	}
	for _, w := range ws {
		if w[0] < 0 || w[1] < 0 || w[0]+w[1] > o.Size {
			return nil, fmt.Errorf("cache: window [%d, +%d) outside object of %d bytes", w[0], w[1], o.Size)
		}
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	out := make([]io.ReadCloser, len(ws))
	switch {
	case o.data != nil:
		for i, w := range ws {
			out[i] = io.NopCloser(bytes.NewReader(o.data[w[0] : w[0]+w[1]]))
		}
	case o.file != nil:
		shared := &sharedClose{c: o.file, left: len(ws)}
		for i, w := range ws {
			out[i] = &sectionOf{SectionReader: io.NewSectionReader(o.file, w[0], w[1]), shared: shared}
		}
		o.file = nil
	case o.fill != nil:
		for i, w := range ws {
			if i > 0 && !o.fill.Acquire() {
				for _, r := range out[:i] {
					r.Close()
				}
				return nil, errors.New("cache: fill gone")
			}
			out[i] = o.fill.NewReader(ctx, w[0], w[1], false)
		}
		o.fill = nil
	default:
		return nil, errors.New("cache: object has no body")
	}
	o.taken = true
	return out, nil
}

// sectionOf reads a window of a file shared by several windows.
type sectionOf struct {
	*io.SectionReader
	shared *sharedClose
	closed bool
}

func (s *sectionOf) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.shared.done()
}

// sharedClose closes c when the last of its users is done. Its users are
// the windows of one response, read one after another by one goroutine.
type sharedClose struct {
	c    io.Closer
	left int
}

func (s *sharedClose) done() error {
	if s.left--; s.left == 0 {
		return s.c.Close()
	}
	return nil
}

// Close releases what the object holds if Body was never called.
func (o *Object) Close() error {
	var err error
	if o.file != nil {
		err = o.file.Close()
		o.file = nil
	}
	if o.pass != nil {
		err = errors.Join(err, o.pass.Close())
		o.pass = nil
	}
	if o.fill != nil {
		o.fill.Release()
		o.fill = nil
	}
	return err
}

// skipReader discards skip bytes of r, then reads at most n (n < 0: all).
type skipReader struct {
	r    io.ReadCloser
	skip int64
	lim  io.Reader
}

func newSkipReader(r io.ReadCloser, skip, n int64) *skipReader {
	s := &skipReader{r: r, skip: skip}
	s.lim = r
	if n >= 0 {
		s.lim = io.LimitReader(r, n)
	}
	return s
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.skip > 0 {
		if _, err := io.CopyN(io.Discard, s.r, s.skip); err != nil {
			return 0, fmt.Errorf("cache: skipping to range start: %w", err)
		}
		s.skip = 0
	}
	return s.lim.Read(p)
}

func (s *skipReader) Close() error { return s.r.Close() }
