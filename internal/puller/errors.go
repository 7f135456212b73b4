package puller

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cacheyd/cacheyd/oci"
)

// ErrStatus is wrapped by every error for a response that is not the one
// asked for (200, or 206 for a Range); see StatusError.
var ErrStatus = errors.New("unexpected status")

// ErrDigestMismatch is wrapped by the error of a manifest or blob whose
// bytes do not hash to the digest they were asked for.
var ErrDigestMismatch = errors.New("content does not match its digest")

// StatusError is an unexpected response status.
type StatusError struct {
	Method string
	// Kind is what was asked for; empty for a token request.
	Kind Kind
	// Repository and Ref (a tag or a digest) say which object; URL is
	// where the request went, ?ns= included.
	Repository, Ref, URL string
	Status               int
	// Code and Message are the first error of the OCI error body, when
	// the answer had one (a HEAD has no body).
	Code, Message string
}

// Error reads "HEAD manifest v1: 404 Not Found: MANIFEST_UNKNOWN ...".
func (e *StatusError) Error() string {
	what := e.URL
	if e.Kind != "" {
		what = e.Kind.noun() + " " + short(e.Ref)
	}
	s := strings.TrimSpace(fmt.Sprintf("%s %s: %d %s", e.Method, what, e.Status, http.StatusText(e.Status)))
	if e.Code != "" || e.Message != "" {
		s += ": " + e.Code + " " + e.Message
	}
	return s
}

// Is makes errors.Is(err, ErrStatus) true.
func (e *StatusError) Is(target error) bool { return target == ErrStatus }

// maxErrorBody bounds what is read of a refusal: enough for an OCI error
// JSON, and reading it to its end lets the connection be used again.
const maxErrorBody = 64 << 10

// refusal describes resp, a refusal, and closes its body.
func refusal(method, repo string, kind Kind, ref, u string, resp *http.Response) *StatusError {
	defer resp.Body.Close()
	e := &StatusError{Method: method, Kind: kind, Repository: repo, Ref: ref, URL: u, Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
	}
	return e
}

// short cuts a digest for messages and leaves a tag alone.
func short(ref string) string {
	if d, err := oci.ParseDigest(ref); err == nil {
		return d.Short()
	}
	return ref
}
