package server

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/oci"
)

// Header keys of every content answer, canonical already, as bytes: set
// with SetCanonical, they skip fasthttp's normalizing, which every hit
// would pay for.
var (
	keyDigest       = []byte("Docker-Content-Digest")
	keyETag         = []byte("Etag")
	keyAcceptRanges = []byte("Accept-Ranges")
	valBytes        = []byte("bytes")
)

var errNoBody = errors.New("server: cache answered a GET without a body")

// answer is what a request for content gets of the object: which bytes,
// with which status.
type answer struct {
	status int
	head   bool // the headers of a GET and no body
	// off and n are the window sent; n is -1 for the whole of content of
	// unknown size.
	off, n int64
	// ranges, when there are several, are sent as the parts of a
	// multipart/byteranges body whose Content-Type is partsType.
	ranges    []byteRange
	partsType string
	// contentRange is the Content-Range of a single range, or of a 416.
	contentRange string
}

// serveContent answers a manifest or blob from the cache, in three steps:
// the window of it the request gets (contentWindow), the body that carries
// those bytes (sendBody) and the headers that describe them
// (setContentHeaders).
func (s *Server) serveContent(ctx *fasthttp.RequestCtx, x *exchange, in *incoming, req *oci.Request) {
	rctx := s.newRequestContext(ctx.Conn())
	x.ctx = rctx
	obj, err := s.cache.Get(rctx, req)
	if err != nil {
		x.fail(ctx, s.whenGone(ctx, rctx, err))
		return
	}
	if obj == nil {
		x.fail(ctx, errNilObject)
		return
	}
	// What the object holds is released here, on every path, unless a body
	// took it (Body, Windows): that body then holds it, which leaves this
	// Close nothing to do, and its stream closes it once fasthttp is done
	// writing, after the handler returns (stream.go).
	defer obj.Close()
	x.source = obj.Source.String()
	// The replica that asked (a peer, or a node-local cacheyd whose parent
	// this is) counts where its answer came from.
	ctx.Response.Header.Set(oci.SourceHeader, x.source)
	if req.Method == http.MethodGet && !obj.HasBody() {
		// Headers with no body would read as empty content.
		x.fail(ctx, errNoBody)
		return
	}
	// The ETag is made without allocating: every hit pays for it.
	var etagBuf [2 + 7 + 128 + 2]byte
	etag := appendETag(etagBuf[:0], obj.Digest)
	a, err := contentWindow(in, obj, etag)
	if err != nil {
		ctx.Response.Header.Set("Content-Range", a.contentRange)
		x.fail(ctx, err)
		return
	}
	x.contentRange = a.contentRange
	// The body is taken before any header is set, so that a failure is
	// answered as a plain error.
	if err := s.sendBody(ctx, x, obj, &a); err != nil {
		x.fail(ctx, err)
		return
	}
	setContentHeaders(&ctx.Response, obj, etag, &a)
}

// appendETag appends the ETag of content named dg, the digest in quotes,
// to b; nothing for content without a digest.
func appendETag(b []byte, dg oci.Digest) []byte {
	if dg == "" {
		return b
	}
	return append(append(append(b, '"'), dg...), '"')
}

// contentWindow is the answer to in for obj: the whole object, one window
// of it or several. It fails only with a 416, whose Content-Range (the
// size the range missed) is a.contentRange.
// Range applies to GET only (RFC 9110 §14.2), and only while If-Range, if
// sent, still names this content.
func contentWindow(in *incoming, obj *cache.Object, etag []byte) (answer, error) {
	a := answer{status: http.StatusOK, head: !obj.HasBody(), n: obj.Size}
	if a.head || in.rangeHeader == "" || (in.ifRange != "" && (len(etag) == 0 || in.ifRange != string(etag))) {
		return a, nil
	}
	ranges, rr := parseRanges(in.rangeHeader, obj.Size)
	switch {
	case rr == rangeUnsatisfiable:
		size := strconv.FormatInt(obj.Size, 10)
		a.contentRange = "bytes */" + size
		return a, &oci.Error{
			Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid,
			Message: "range " + quoteShort(in.rangeHeader) + " not satisfiable: content is " + size + " bytes",
		}
	case rr != rangeOK:
		// Ignored (ranges.go): the whole object.
	case len(ranges) > 1:
		a.status, a.ranges = http.StatusPartialContent, ranges
	default:
		a.status, a.off, a.n = http.StatusPartialContent, ranges[0].start, ranges[0].length
		a.contentRange = ranges[0].contentRange(obj.Size)
	}
	return a, nil
}

// sendBody takes a's bytes of obj and hands them to fasthttp: a memory
// hit's shared slice as it is, anything else as a stream that fasthttp
// writes after the handler returns and then closes (stream.go). Several
// ranges of content that reads only in order (a pass-through, an uncached
// stream) are answered with the whole of it, and a changed to say so. It
// sets nothing if it fails.
func (s *Server) sendBody(ctx *fasthttp.RequestCtx, x *exchange, obj *cache.Object, a *answer) error {
	if a.head {
		return nil
	}
	if len(a.ranges) > 1 {
		parts, err := obj.Windows(windowsOf(a.ranges))
		switch {
		case err == nil:
			body, contentType, n := newMultipart(a.ranges, parts, obj.Size, obj.MediaType)
			a.partsType = contentType
			x.contentRange = multipartRange(a.ranges)
			s.stream(ctx, x, body, n)
			return nil
		case !errors.Is(err, errors.ErrUnsupported):
			return err
		}
		*a = answer{status: http.StatusOK, n: obj.Size}
	}
	if b := obj.Bytes(); b != nil && int64(len(b)) == obj.Size {
		// A memory hit: the shared slice is immutable, so no copy.
		raw := b[a.off : a.off+a.n]
		ctx.Response.SetBodyRaw(raw)
		x.sent = int64(len(raw))
		return nil
	}
	body, err := obj.Body(a.off, a.n)
	if err != nil {
		return err
	}
	s.stream(ctx, x, body, a.n)
	return nil
}

// stream hands body, of n bytes (-1: unknown, sent chunked), to fasthttp,
// which owns it from here: it closes the stream, and so the body, exactly
// once, when written or when the response is dropped unwritten.
func (s *Server) stream(ctx *fasthttp.RequestCtx, x *exchange, body io.ReadCloser, n int64) {
	base := streamBase{body: body, renew: ctx.SetWriteDeadline, timeout: s.cfg.WriteTimeout, end: x.streamEnded}
	x.streaming = true
	stream, flush := newBodyStream(base, n)
	ctx.Response.ImmediateHeaderFlush = flush
	ctx.Response.SetBodyStream(stream, int(max(n, -1)))
}

// setContentHeaders describes a: its status, the object's digest, type and
// size, and the window sent.
func setContentHeaders(resp *fasthttp.Response, obj *cache.Object, etag []byte, a *answer) {
	h := &resp.Header
	resp.SetStatusCode(a.status)
	if obj.Digest != "" {
		h.SetCanonical(keyDigest, etag[1:len(etag)-1])
		h.SetCanonical(keyETag, etag)
	}
	switch {
	case a.partsType != "":
		h.SetContentType(a.partsType)
	case obj.MediaType != "":
		h.SetContentType(obj.MediaType)
	}
	if obj.Size >= 0 {
		h.SetCanonical(keyAcceptRanges, valBytes)
	}
	if a.contentRange != "" {
		h.Set("Content-Range", a.contentRange)
	}
	if a.head {
		// The headers of a GET, Content-Length included, and no body:
		// fasthttp skips the body of a HEAD and keeps our Content-Length.
		// An unknown size is announced as a GET would send it: chunked.
		h.SetContentLength(int(max(obj.Size, -1)))
	}
}
