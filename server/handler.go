package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/oci"
)

// apiVersionHeader is sent on every /v2 response, errors included: Docker
// and containerd check it to know they talk to a registry.
const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
)

// Header keys of every content answer, canonical already, as bytes: set
// with SetCanonical, they skip fasthttp's normalizing, which every hit
// would pay for.
var (
	keyAPIVersion   = []byte(apiVersionHeader)
	valAPIVersion   = []byte(apiVersion)
	keyDigest       = []byte("Docker-Content-Digest")
	keyETag         = []byte("Etag")
	keyAcceptRanges = []byte("Accept-Ranges")
	keyNamespace    = []byte("Oci-Namespace")
	valBytes        = []byte("bytes")
)

// handle is the fasthttp request handler: it reads the request once and
// routes it.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	in := readIncoming(ctx)
	x := &exchange{s: s, start: time.Now(), method: in.method, remote: in.remote, kind: "other"}
	defer x.handled(ctx)
	switch {
	case in.path == "/healthz":
		x.kind, x.quiet = "health", true
		serveText(ctx, &in, http.StatusOK, "ok\n")
	case in.path == "/readyz":
		x.kind, x.quiet = "health", true
		if s.ready.Load() {
			serveText(ctx, &in, http.StatusOK, "ready\n")
		} else {
			serveText(ctx, &in, http.StatusServiceUnavailable, "not ready\n")
		}
	case in.path == "/metrics":
		x.kind, x.quiet = "metrics", true
		if s.cfg.GuardMetrics && !s.guard.admits(ctx.Request.Header.Peek(TokenHeader)) {
			x.fail(ctx, errNoClientToken)
			return
		}
		if s.promHandler != nil && isRead(in.method) {
			s.promHandler(ctx)
		} else {
			serveText(ctx, &in, http.StatusNotFound, "404 page not found\n")
		}
	case in.path == "/":
		x.kind, x.quiet = "status", true
		if s.cfg.GuardMetrics && !s.guard.admits(ctx.Request.Header.Peek(TokenHeader)) {
			x.fail(ctx, errNoClientToken)
			return
		}
		s.serveStatus(ctx, &in)
	case in.path == peerauth.ProbePath:
		x.kind, x.quiet = "peer", true
		s.serveProbe(ctx, x, &in)
	case in.path == "/v2" || strings.HasPrefix(in.path, "/v2/"):
		ctx.Response.Header.SetCanonical(keyAPIVersion, valAPIVersion)
		if in.hasNS && !in.nsRepeated {
			if _, err := oci.NormalizeRegistry(in.ns); err == nil {
				// The distribution spec's proxying rule: a registry that
				// scopes a request by ns says so with its value, on
				// every answer, errors too.
				ctx.Response.Header.SetCanonical(keyNamespace, []byte(in.ns))
			}
		}
		if in.hop {
			// Before anything else is answered, so that every answer to
			// a peer, the guard's too, carries this replica's proof.
			p := s.admitPeer(ctx, x, &in)
			if p == nil {
				return
			}
			// Runs before x.handled: every header is set by then, and
			// none is written yet.
			defer s.proveAnswer(ctx, p)
		}
		if !s.guard.admits(ctx.Request.Header.Peek(TokenHeader)) {
			x.path = in.path
			x.fail(ctx, errNoClientToken)
			return
		}
		ids, looped := s.loop(&in)
		if looped {
			s.refuseLoop(ctx, x, &in)
			return
		}
		in.viaIDs = ids
		s.serveAPI(ctx, x, &in)
	default:
		x.path = in.path
		x.fail(ctx, errNoEndpoint)
	}
}

// handleReadError answers a request fasthttp could not read (header too
// large, body too large, too slow, malformed), with an access line like
// any other.
func (s *Server) handleReadError(ctx *fasthttp.RequestCtx, err error) {
	x := &exchange{s: s, start: time.Now(), method: string(ctx.Method()), remote: ctx.RemoteAddr(), kind: "other"}
	defer x.handled(ctx)
	x.fail(ctx, readError(err))
	x.err = err
}

var (
	errNoBody    = errors.New("server: cache answered a GET without a body")
	errNilObject = errors.New("server: cache answered with neither object nor error")
)

// isRead reports whether method is one cacheyd answers: GET or HEAD.
func isRead(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

// serveText answers the operational endpoints: with status and body to a
// GET or HEAD, with 405 to any other method.
func serveText(ctx *fasthttp.RequestCtx, in *incoming, status int, body string) {
	if !isRead(in.method) {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		status, body = http.StatusMethodNotAllowed, "method not allowed\n"
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(body)
}

// serveAPI answers a request under /v2.
func (s *Server) serveAPI(ctx *fasthttp.RequestCtx, x *exchange, in *incoming) {
	ar, err := parseAPI(in, s.cfg.DefaultRegistry)
	if err == nil {
		x.kind = ar.path.Kind.String()
		x.reqv = ar.req // held by the exchange: no allocation of its own
		x.req = &x.reqv
	} else {
		x.path = in.path
	}
	// The method is checked before the path, so a push is refused as a push
	// whatever its path.
	if !isRead(in.method) {
		allow := "GET, HEAD"
		switch ar.path.Kind {
		case oci.KindUpload, oci.KindCatalog:
			allow = "" // no method of these is enabled
		}
		x.fail(ctx, errMethod(in.method, allow))
		return
	}
	if err == nil && ar.req.Registry != "" {
		// Before the cache is asked: a registry off the list gets nothing,
		// neither a fetch nor what the cache already holds.
		err = s.registries.Check(ar.req.Registry)
	}
	if err != nil {
		x.fail(ctx, err)
		return
	}
	switch ar.path.Kind {
	case oci.KindBase:
		// The API version check: a registry that needs no authentication.
		ctx.SetStatusCode(http.StatusOK)
		ctx.SetContentType("application/json")
		ctx.SetBodyString("{}")
	case oci.KindManifest, oci.KindBlob:
		s.serveContent(ctx, x, in, x.req)
	case oci.KindUpload:
		x.fail(ctx, errDisabled("blob upload (push)"))
	case oci.KindTags, oci.KindReferrers:
		s.serveListing(ctx, x, in, x.req)
	case oci.KindCatalog:
		// A mirror must not enumerate what it holds, nor what any
		// registry holds.
		x.fail(ctx, errDisabled("_catalog"))
	default:
		x.fail(ctx, errNoEndpoint)
	}
}

// serveContent answers a manifest or blob from the cache.
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
	x.source = obj.Source.String()
	// The replica that asked (a peer, or a node-local cacheyd whose parent
	// this is) counts where its answer came from.
	ctx.Response.Header.Set(oci.SourceHeader, x.source)
	hasBody := obj.HasBody()
	if req.Method == http.MethodGet && !hasBody {
		// Headers with no body would read as empty content.
		_ = obj.Close()
		x.fail(ctx, errNoBody)
		return
	}
	// The ETag is the digest in quotes, made without allocating: every hit
	// pays for it.
	var etagBuf [2 + 7 + 128 + 2]byte
	etag := etagBuf[:0]
	if obj.Digest != "" {
		etag = append(append(append(etag, '"'), obj.Digest...), '"')
	}

	// Range applies to GET only (RFC 9110 §14.2), and only while If-Range,
	// if sent, still names this content.
	off, n, status := int64(0), obj.Size, http.StatusOK
	if hasBody && in.rangeHeader != "" && (in.ifRange == "" || (len(etag) > 0 && in.ifRange == string(etag))) {
		ranges, rr := parseRanges(in.rangeHeader, obj.Size)
		if rr == rangeOK && len(ranges) > 1 {
			if s.serveMultipart(ctx, x, obj, etag, ranges) {
				return
			}
			rr = rangeIgnore // content that reads only in order: the whole of it
		}
		var br byteRange
		if len(ranges) > 0 {
			br = ranges[0]
		}
		switch rr {
		case rangeUnsatisfiable:
			_ = obj.Close()
			ctx.Response.Header.Set("Content-Range", "bytes */"+strconv.FormatInt(obj.Size, 10))
			x.fail(ctx, &oci.Error{
				Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid,
				Message: "range " + quoteShort(in.rangeHeader) + " not satisfiable: content is " + strconv.FormatInt(obj.Size, 10) + " bytes",
			})
			return
		case rangeOK:
			off, n, status = br.start, br.length, http.StatusPartialContent
			x.contentRange = br.contentRange(obj.Size)
		}
	}

	// Take the body before writing any header, so that a failure here is
	// answered as a plain error.
	var (
		raw  []byte
		body io.ReadCloser
	)
	switch b := obj.Bytes(); {
	case !hasBody: // HEAD
		_ = obj.Close()
	case b != nil && int64(len(b)) == obj.Size:
		// A memory hit: the shared slice is immutable, so no copy.
		_ = obj.Close()
		raw = b[off : off+n]
	default:
		if body, err = obj.Body(off, n); err != nil {
			_ = obj.Close()
			x.fail(ctx, err)
			return
		}
	}

	h := &ctx.Response.Header
	ctx.SetStatusCode(status)
	if obj.Digest != "" {
		h.SetCanonical(keyDigest, etag[1:len(etag)-1])
		h.SetCanonical(keyETag, etag)
	}
	if obj.MediaType != "" {
		h.SetContentType(obj.MediaType)
	}
	if obj.Size >= 0 {
		h.SetCanonical(keyAcceptRanges, valBytes)
	}
	if x.contentRange != "" {
		h.Set("Content-Range", x.contentRange)
	}

	switch {
	case !hasBody:
		// The headers of a GET, Content-Length included, and no body:
		// fasthttp skips the body of a HEAD and keeps our Content-Length.
		// An unknown size is announced as a GET would send it: chunked.
		h.SetContentLength(int(max(obj.Size, -1)))
	case raw != nil:
		ctx.Response.SetBodyRaw(raw)
		x.sent = int64(len(raw))
	default:
		size := -1 // unknown: chunked
		if n >= 0 {
			size = int(n)
		}
		base := streamBase{body: body, renew: ctx.SetWriteDeadline, timeout: s.cfg.WriteTimeout, end: x.streamEnded}
		x.streaming = true
		if f, ok := body.(*os.File); ok && n >= 0 {
			ctx.Response.SetBodyStream(&fileStream{streamBase: base, file: f, size: n}, size)
			return
		}
		// A window of a disk hit offers its file positioned at the window,
		// so a Range is sent with sendfile too; base.body still closes it.
		if fw, ok := body.(interface{ File() (*os.File, error) }); ok && n >= 0 {
			if f, err := fw.File(); err == nil {
				ctx.Response.SetBodyStream(&fileStream{streamBase: base, file: f, size: n}, size)
				return
			}
		}
		// Headers go out before the first byte, which may be long in
		// coming, and so the body's bytes reach the connection as they
		// come (stream.go).
		ctx.Response.ImmediateHeaderFlush = true
		// A fill in flight is sent from its file as it grows (stream.go).
		if src, ok := body.(fileSender); ok && n >= 0 {
			ctx.Response.SetBodyStream(&growingStream{streamBase: base, src: src}, size)
			return
		}
		ctx.Response.SetBodyStream(&readerStream{base}, size)
	}
}

// whenGone is err, the cache's failure, marked errClientGone when the
// client left while the cache was waiting: whatever the cache made of its
// cancelled wait, the answer goes nowhere, and the connection is closed
// after it.
func (s *Server) whenGone(ctx *fasthttp.RequestCtx, rctx *requestContext, err error) error {
	if rctx.clientGone() {
		ctx.SetConnectionClose()
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return err
}

// serveMultipart answers several ranges of obj with multipart/byteranges.
// It reports false, having written nothing, for content that has no
// windows (it is read only once, in order).
func (s *Server) serveMultipart(ctx *fasthttp.RequestCtx, x *exchange, obj *cache.Object, etag []byte, ranges []byteRange) bool {
	readers, err := obj.Windows(windowsOf(ranges))
	if errors.Is(err, errors.ErrUnsupported) {
		return false
	}
	if err != nil {
		_ = obj.Close()
		x.fail(ctx, err)
		return true
	}
	body, contentType, n := newMultipart(ranges, readers, obj.Size, obj.MediaType)
	h := &ctx.Response.Header
	ctx.SetStatusCode(http.StatusPartialContent)
	if obj.Digest != "" {
		h.Set("Docker-Content-Digest", string(obj.Digest))
		h.SetBytesV("ETag", etag)
	}
	h.Set("Accept-Ranges", "bytes")
	h.SetContentType(contentType)
	x.contentRange = multipartRange(ranges)
	base := streamBase{body: body, renew: ctx.SetWriteDeadline, timeout: s.cfg.WriteTimeout, end: x.streamEnded}
	x.streaming = true
	ctx.Response.ImmediateHeaderFlush = true
	ctx.Response.SetBodyStream(&readerStream{base}, int(n))
	return true
}
