package server

import (
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/oci"
)

// isTLSHello reports whether fasthttp failed to read a request because the
// connection opened with a TLS handshake record (0x16, then version major
// 3): a client trying HTTPS first on the plain-HTTP port, as
// go-containerregistry's (crane) do before falling back to HTTP. fasthttp
// names the bytes it could not parse only in its error's text, quoted with
// %q, and the first quoted string of each of its parse errors starts
// where the connection's bytes start.
func isTLSHello(err error) bool {
	if err == nil {
		return false
	}
	_, quoted, ok := strings.Cut(err.Error(), `"`)
	return ok && strings.HasPrefix(quoted, `\x16\x03`)
}

// refuseTLSHello answers a TLS handshake on the plain-HTTP port with a 400,
// which the client reads as "not TLS" and retries over HTTP. It is counted
// apart from the requests and logged as one short line without the
// handshake's bytes: each such client does it on every call, and its
// ClientHello, escaped, is kilobytes of noise.
func (s *Server) refuseTLSHello(ctx *fasthttp.RequestCtx) {
	s.m.RequestsRefused.WithLabelValues("tls").Inc()
	s.log.Info("tls handshake on the plain-HTTP port: answered 400, for the client to retry over HTTP",
		"remote", ctx.RemoteAddr().String())
	writeError(&ctx.Response, &oci.Error{Status: http.StatusBadRequest, Code: "UNKNOWN", Message: "TLS handshake on a plain-HTTP port"})
	ctx.SetConnectionClose()
}
