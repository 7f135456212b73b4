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
	// RetryAfter is upstream's Retry-After, passed back on 429 and 503.
	RetryAfter string
	// Body and ContentType are upstream's error response, when there is one.
	Body        []byte
	ContentType string

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
