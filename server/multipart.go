package server

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/textproto"
	"strconv"
)

// Several ranges in one request are answered as net/http's ServeContent
// answers them: 206 with a multipart/byteranges body, a part for each range
// in the order asked, each with its Content-Range and the object's
// Content-Type. A lazy-pulling client that asks for a table of contents and
// a few files at once so gets only those bytes, not the whole layer.

// multipartBody is the body of a multipart/byteranges answer and its
// length, its parts read from readers, one per range.
type multipartBody struct {
	io.Reader
	parts []io.ReadCloser
}

// newMultipart lays out the parts of ranges of an object of size bytes and
// mediaType, to be read from readers (one per range, in order); it returns
// the body, its Content-Type and its length.
func newMultipart(ranges []byteRange, readers []io.ReadCloser, size int64, mediaType string) (*multipartBody, string, int64) {
	var segs []io.Reader
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	var n int64
	for i, r := range ranges {
		h := textproto.MIMEHeader{}
		h.Set("Content-Range", r.contentRange(size))
		if mediaType != "" {
			h.Set("Content-Type", mediaType)
		}
		_, _ = mw.CreatePart(h) // writes the part's header into buf
		head := bytes.Clone(buf.Bytes())
		buf.Reset()
		segs = append(segs, bytes.NewReader(head), io.LimitReader(readers[i], r.length))
		n += int64(len(head)) + r.length
	}
	_ = mw.Close()
	segs = append(segs, bytes.NewReader(bytes.Clone(buf.Bytes())))
	n += int64(buf.Len())
	return &multipartBody{Reader: io.MultiReader(segs...), parts: readers}, "multipart/byteranges; boundary=" + mw.Boundary(), n
}

// Close closes every part's reader.
func (b *multipartBody) Close() error {
	var err error
	for _, r := range b.parts {
		err = errors.Join(err, r.Close())
	}
	return err
}

// windowsOf is the offset and length of each range, for the cache.
func windowsOf(ranges []byteRange) [][2]int64 {
	out := make([][2]int64, len(ranges))
	for i, r := range ranges {
		out[i] = [2]int64{r.start, r.length}
	}
	return out
}

// multipartRange is the access log's Content-Range for a multipart answer.
func multipartRange(ranges []byteRange) string {
	return "multipart " + strconv.Itoa(len(ranges))
}
