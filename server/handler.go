package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/oci"
)

// apiVersionHeader is sent on every /v2 response, errors included: Docker
// and containerd check it to know they talk to a registry.
const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
)

// Header keys of every /v2 answer, canonical already, as bytes: set with
// SetCanonical, they skip fasthttp's normalizing, which every hit would pay
// for.
var (
	keyAPIVersion = []byte(apiVersionHeader)
	valAPIVersion = []byte(apiVersion)
	keyNamespace  = []byte("Oci-Namespace")
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
			defer func() {
				s.stateBudget(ctx, p, x.req)
				s.proveAnswer(ctx, p)
			}()
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
	if isTLSHello(err) {
		s.refuseTLSHello(ctx)
		return
	}
	x := &exchange{s: s, start: time.Now(), method: string(ctx.Method()), remote: ctx.RemoteAddr(), kind: "other"}
	defer x.handled(ctx)
	x.fail(ctx, readError(err))
	x.err = err
}

var errNilObject = errors.New("server: cache answered with neither object nor error")

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
