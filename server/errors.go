package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/oci"
)

// This file is the one place where errors become responses.

// errNoEndpoint answers a /v2 path the distribution API does not define. The
// code is UNSUPPORTED rather than NAME_UNKNOWN: the repository may well
// exist, the endpoint does not.
var errNoEndpoint = &oci.Error{Status: http.StatusNotFound, Code: oci.CodeUnsupported, Message: "no such endpoint"}

// notAllowed is a 405 with the methods the resource does allow, which RFC
// 9110 requires in an Allow header. An empty allow is meaningful: the
// resource allows no method at all ("disabled by configuration").
type notAllowed struct {
	err   *oci.Error
	allow string
}

func (e *notAllowed) Error() string { return e.err.Error() }
func (e *notAllowed) Unwrap() error { return e.err }

// errMethod refuses a method other than GET and HEAD: cacheyd is a
// read-only cache, so every push (POST, PUT, PATCH, DELETE) is refused
// here, whatever its path.
func errMethod(method, allow string) error {
	return &notAllowed{
		err:   oci.ErrUnsupported(quoteShort(method) + " is not supported: this registry is a read-only pull-through cache"),
		allow: allow,
	}
}

// errDisabled refuses an endpoint the distribution API defines but cacheyd
// does not offer (uploads, _catalog). 405 with an empty Allow
// says what is true: the resource exists in the API and no method of it is
// enabled here. A 404 would read as "repository unknown".
func errDisabled(what string) error {
	return &notAllowed{
		err:   oci.ErrUnsupported(what + " is not supported by this pull-through cache"),
		allow: "",
	}
}

// readError is the answer to a request that could not be read at all,
// given fasthttp's reason. The connection is closed after it.
func readError(err error) *oci.Error {
	var small *fasthttp.ErrSmallBuffer
	var nerr net.Error
	switch {
	case errors.As(err, &small):
		return &oci.Error{Status: http.StatusRequestHeaderFieldsTooLarge, Code: oci.CodeSizeInvalid, Message: "request header too large"}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// Only a push has a body worth the name.
		return oci.ErrTooLarge("request body too large: this registry is a read-only pull-through cache")
	case errors.As(err, &nerr) && nerr.Timeout():
		return &oci.Error{Status: http.StatusRequestTimeout, Code: "UNKNOWN", Message: "request not received in time"}
	}
	return &oci.Error{Status: http.StatusBadRequest, Code: "UNKNOWN", Message: "malformed request"}
}

// errorJSON is the OCI distribution error body.
type errorJSON struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail"`
}

// statusClientClosed is nginx's "client closed request": the status logged
// and counted for a request whose client left before its answer was ready.
// It is written to a connection that is being closed, so no client reads it.
const statusClientClosed = 499

// errClientGone is the cause of a request context cancelled because the
// client closed its connection (hangup_linux.go).
var errClientGone = errors.New("client closed the connection")

// writeError answers err on resp and returns the status it chose:
//
//   - *oci.Error carrying upstream's own Body: status, Content-Type, body,
//     WWW-Authenticate and Retry-After pass through unaltered, so that a
//     client sees the registry's own 401 challenge, authenticates with that
//     registry's realm and retries with Authorization;
//   - *oci.Error without Body: its status with the OCI error JSON (and its
//     challenge and Retry-After, if any);
//   - oci.ErrUpstreamTimeout or context.DeadlineExceeded: 504 UNAVAILABLE,
//     upstream (or a fill waiting on it) took too long;
//   - oci.ErrUpstreamUnavailable: 502 UNAVAILABLE at once, so containerd
//     moves on to the next host in hosts.toml;
//   - oci.ErrUpstreamFault (a transfer upstream failed, after every retry):
//     502 UNAVAILABLE;
//   - errClientGone: 499, for the log; nobody reads it;
//   - a cancelled request (the server is shutting down): 503 UNAVAILABLE;
//   - anything else: 500 with a generic message; what went wrong is for the
//     access log, not for the client.
//
// An answer that is upstream's doing (oci.FromUpstream: the registry's own
// answer, a registry unreachable or too slow, a transfer it failed, or
// such a failure another cacheyd relayed) carries oci.RelayedHeader, so
// that a cacheyd that asked this one (a peer, a child whose parent this
// is) neither retries it nor holds it against this one. cacheyd's own
// refusals (the client-token guard, a malformed request, too many fills, an
// internal error, a loop) never do.
//
// The answer does not depend on the method: a HEAD gets every header a GET
// of the same error gets, Content-Type and Content-Length included, and
// fasthttp leaves out the body. (Upstream's answer to a HEAD has no body,
// so an error met by an upstream HEAD is answered with cacheyd's own JSON,
// to a HEAD as it would be to a GET.)
func writeError(resp *fasthttp.Response, err error) int {
	if na := (*notAllowed)(nil); errors.As(err, &na) {
		resp.Header.Set("Allow", na.allow)
	}
	e, ok := oci.AsError(err)
	switch {
	case ok && e.Status >= 400 && e.Status <= 599:
	case errors.Is(err, oci.ErrUpstreamTimeout), errors.Is(err, context.DeadlineExceeded):
		// Before ErrUpstreamUnavailable, which a timeout wraps too.
		e = &oci.Error{Status: http.StatusGatewayTimeout, Code: oci.CodeUnavailable, Message: "upstream registry did not answer in time"}
	case errors.Is(err, oci.ErrUpstreamUnavailable):
		e = &oci.Error{Status: http.StatusBadGateway, Code: oci.CodeUnavailable, Message: "upstream registry unavailable"}
	case errors.Is(err, oci.ErrUpstreamFault):
		e = &oci.Error{Status: http.StatusBadGateway, Code: oci.CodeUnavailable, Message: "upstream registry failed the transfer"}
	case errors.Is(err, errClientGone):
		e = &oci.Error{Status: statusClientClosed, Code: oci.CodeUnavailable, Message: "client closed the connection"}
	case errors.Is(err, context.Canceled):
		e = &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "server shutting down"}
	default:
		e = &oci.Error{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: "internal error"}
	}
	resp.SetStatusCode(e.Status)
	if oci.FromUpstream(err) {
		resp.Header.Set(oci.RelayedHeader, "1")
	}
	if e.Challenge != "" {
		resp.Header.Set("WWW-Authenticate", e.Challenge)
	}
	if e.RetryAfterHeader != "" {
		resp.Header.Set("Retry-After", e.RetryAfterHeader)
	}
	body := e.Body
	if body != nil {
		if e.ContentType != "" {
			resp.Header.SetContentType(e.ContentType)
		}
	} else {
		var merr error
		if body, merr = json.Marshal(errorJSON{Errors: []errorEntry{{Code: e.Code, Message: e.Message}}}); merr != nil {
			// Strings always marshal; this is unreachable.
			body = []byte(`{"errors":[{"code":"UNKNOWN","message":"internal error","detail":null}]}`)
		}
		resp.Header.SetContentType("application/json")
	}
	resp.SetBody(body)
	// fasthttp sets Content-Length from the body it sends; for a HEAD it
	// keeps ours, which an empty body would otherwise leave out.
	resp.Header.SetContentLength(len(body))
	return e.Status
}
