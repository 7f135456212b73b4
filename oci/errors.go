package oci

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the OCI distribution spec, plus UNAVAILABLE (as Docker's
// registry uses it) for an upstream that cannot be reached.
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestInvalid = "MANIFEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeSizeInvalid     = "SIZE_INVALID"
	CodeUnauthorized    = "UNAUTHORIZED"
	CodeDenied          = "DENIED"
	CodeUnsupported     = "UNSUPPORTED"
	CodeTooManyRequests = "TOOMANYREQUESTS"
	CodeRangeInvalid    = "RANGE_INVALID"
	CodeUnavailable     = "UNAVAILABLE"
)

// Error is a registry's answer that is not content: a status, an OCI error
// code and message, and the headers that must reach the client with it.
//
// When it comes from upstream, Body holds upstream's own error body (bounded)
// so that it can be passed on unaltered; otherwise Body is nil and the server
// writes the OCI error JSON from Code and Message.
type Error struct {
	Status  int
	Code    string
	Message string

	// Challenge is upstream's WWW-Authenticate, passed back unaltered so the
	// client can authenticate with the registry's own realm.
	Challenge string
	// RetryAfterHeader is the Retry-After sent with the answer (upstream's,
	// passed back on 429 and 503, or cacheyd's own), as sent; RetryAfter
	// reads it.
	RetryAfterHeader string
	// Body and ContentType are upstream's error response, when there is one.
	Body        []byte
	ContentType string
	// Upstream says the answer is the registry's own (a 404, its 401
	// challenge, a 429, a 5xx), passed on by the upstream client or
	// relayed by another cacheyd, rather than cacheyd's own refusal.
	Upstream bool

	// Err is the cause, if any, for errors.Is/As.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrUpstreamUnavailable marks a failure to reach upstream at all (DNS,
// connect, TLS, timeout before a status). The server answers it with a fast
// 502 so containerd moves on to the next host in hosts.toml.
var ErrUpstreamUnavailable = errors.New("upstream unavailable")

// ErrUpstreamTimeout marks an upstream that was reached, or was being
// reached, but did not send response headers in time (an upstream that
// accepts connections and never answers, or drips its headers). It always
// comes together with ErrUpstreamUnavailable, so whoever only knows that
// one treats it as unreachable; the server can tell the two apart and
// answer a gateway timeout (504) instead of 502.
var ErrUpstreamTimeout = errors.New("upstream timed out before response headers")

// ErrUpstreamFault marks a transfer the registry failed once it was under
// way: a body cut for good, more or fewer bytes than announced, bytes that
// are not the digest asked for, after every attempt the fetch was allowed.
var ErrUpstreamFault = errors.New("upstream failed the transfer")

// ErrRelayed marks an upstream failure that another cacheyd (a peer or the
// parent) relayed (RelayedHeader): that cacheyd made its attempts already,
// so the one that asked makes none of its own (one ladder of retries per
// client request, not one per hop), does not fetch around it, and does not
// count the failure against the cacheyd that relayed it.
var ErrRelayed = errors.New("upstream failure relayed by another cacheyd")

// ErrStalled is why an origin's body was abandoned: it sent nothing for the
// idle timeout of its reader (retry's, or Response.Idle). The attempt's
// context is cancelled with it as the cause, so that whoever reads beneath
// the reader (the cluster's peer client) can tell a stall of the one it
// asked from the reader's own end.
var ErrStalled = errors.New("origin sent nothing within the idle timeout")

// FromUpstream reports whether err is upstream's doing rather than
// cacheyd's: the registry's own answer (Error.Upstream), a registry that
// could not be reached or did not answer in time, a transfer it failed, or
// such a failure relayed by another cacheyd. A cacheyd answering another
// marks such answers with RelayedHeader.
func FromUpstream(err error) bool {
	if e, ok := AsError(err); ok && e.Upstream {
		return true
	}
	return errors.Is(err, ErrUpstreamUnavailable) || errors.Is(err, ErrUpstreamFault) || errors.Is(err, ErrRelayed)
}

// AsError returns err's *Error, if it holds one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func newError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Constructors for the errors cacheyd itself answers with.
func ErrNameInvalid(msg string) *Error { return newError(http.StatusBadRequest, CodeNameInvalid, msg) }
func ErrDigestInvalid(msg string) *Error {
	return newError(http.StatusBadRequest, CodeDigestInvalid, msg)
}
func ErrManifestInvalid(msg string) *Error {
	return newError(http.StatusBadRequest, CodeManifestInvalid, msg)
}
func ErrNotFound(msg string) *Error { return newError(http.StatusNotFound, CodeNameUnknown, msg) }
func ErrBlobUnknown(d Digest) *Error {
	return newError(http.StatusNotFound, CodeBlobUnknown, "blob unknown: "+string(d))
}
func ErrManifestUnknown(ref string) *Error {
	return newError(http.StatusNotFound, CodeManifestUnknown, "manifest unknown: "+ref)
}
func ErrUnsupported(msg string) *Error {
	return newError(http.StatusMethodNotAllowed, CodeUnsupported, msg)
}
func ErrDenied(msg string) *Error { return newError(http.StatusForbidden, CodeDenied, msg) }
func ErrTooLarge(msg string) *Error {
	return newError(http.StatusRequestEntityTooLarge, CodeSizeInvalid, msg)
}
