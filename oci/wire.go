package oci

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// What a registry client reads and writes on the wire beside the paths:
// the Range a Request asks with, the Content-Range that answers it, the
// error body of a refusal. The upstream client and the cluster's peer
// client both speak it, so it is written once, here.

// Headers cacheyd speaks to itself, beside the distribution API's own.
const (
	// TokenHeader carries the shared client token (--client-token).
	TokenHeader = "X-Cacheyd-Token"
	// HopHeader marks a request that one cacheyd replica sends another on
	// a miss: the replica that receives it fetches itself and never asks
	// a peer again (Request.FromPeer), so a request makes at most one hop.
	HopHeader = "X-Cacheyd-Hop"
	// SourceHeader says where a cacheyd's answer came from: memory, disk,
	// joined, fill, passthrough, upstream, uncached or tags (the access
	// log's outcome). The replica that asked counts it.
	SourceHeader = "X-Cacheyd-Source"
	// RelayedHeader ("1") marks an error answer that is upstream's doing
	// (FromUpstream), relayed after the answering cacheyd's own attempts:
	// the cacheyd that asked neither retries it nor holds it against the
	// one that relayed it (ErrRelayed).
	RelayedHeader = "X-Cacheyd-Relayed"
	// ViaHeader lists the instance ids of the cacheyds a request passed
	// through on its way (Request.Via), comma-separated, oldest first:
	// each adds its own before it asks its parent, and passes the chain on
	// as it came to a peer (which never forwards to a peer again). A cacheyd
	// that finds its own id there, or MaxVia ids or more (it would be one
	// more), refuses the request 508 Loop Detected: a --parent chain that
	// comes back to where it started costs one refusal, not a wait for
	// itself. A cacheyd that would send its parent MaxVia ids asks
	// upstream instead, so that a parent refuses only for its own id.
	ViaHeader = "X-Cacheyd-Via"
)

// MaxVia bounds the cacheyds one request may pass through: a chain of
// parents and one hop between peers at each level is never longer.
const MaxVia = 8

// MaxErrorBody bounds how much of an error body is read and kept to be
// passed on.
const MaxErrorBody = 64 << 10

// RangeHeader is the Range header a GET for r sends, or "" for the whole
// object.
func (r *Request) RangeHeader() string {
	switch {
	case r.Method != http.MethodGet:
		return ""
	case r.Suffix > 0:
		return fmt.Sprintf("bytes=-%d", r.Suffix)
	case r.Length > 0:
		return fmt.Sprintf("bytes=%d-%d", r.Offset, r.Offset+r.Length-1)
	case r.Offset > 0:
		return fmt.Sprintf("bytes=%d-", r.Offset)
	}
	return ""
}

// ContentRange is a parsed "bytes Start-End/Size" (End inclusive); Size is
// -1 for "*".
type ContentRange struct {
	Start, End, Size int64
}

// ParseContentRange parses the Content-Range of a 206 (RFC 9110 14.4).
func ParseContentRange(s string) (ContentRange, error) {
	bad := func() (ContentRange, error) {
		return ContentRange{}, fmt.Errorf("bad Content-Range %.60q", s)
	}
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return bad()
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return bad()
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return bad()
	}
	var r ContentRange
	var err1, err2 error
	r.Start, err1 = parseLength(first)
	r.End, err2 = parseLength(last)
	if err1 != nil || err2 != nil || r.End < r.Start {
		return bad()
	}
	r.Size = -1
	if total != "*" {
		n, err := parseLength(total)
		if err != nil || n <= r.End {
			return bad()
		}
		r.Size = n
	}
	return r, nil
}

// parseLength parses a non-negative decimal of digits only (no sign, no
// spaces), as the grammar of Content-Range demands.
func parseLength(s string) (int64, error) {
	if s == "" || len(s) > 19 || strings.Trim(s, "0123456789") != "" {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}

// Answers checks that a 206's range is the one req asked for: the start
// asked, and the end asked or the object's last byte before it.
func (r ContentRange) Answers(req *Request) error {
	start, end := req.Offset, int64(-1) // end inclusive; -1: the object's last byte
	if req.Length > 0 {
		end = req.Offset + req.Length - 1
	}
	if req.Suffix > 0 {
		if r.Size < 0 {
			return fmt.Errorf("range of an object of unknown size, asked for its last %d bytes", req.Suffix)
		}
		start = max(r.Size-req.Suffix, 0)
	}
	last := r.Size - 1 // -2 when the size is unknown
	switch {
	case r.Start != start:
		return fmt.Errorf("range starts at %d, asked for %d", r.Start, start)
	case end >= 0 && r.End != end && !(r.Size >= 0 && r.End == last && end > last):
		return fmt.Errorf("range ends at %d, asked for %d", r.End, end)
	case end < 0 && r.Size >= 0 && r.End != last:
		return fmt.Errorf("range ends at %d, short of the object's end at %d", r.End, last)
	}
	return nil
}

// codeUnknown is the code for a status no other code fits, as Docker's
// registry spells it.
const codeUnknown = "UNKNOWN"

// ErrorFromResponse maps a non-2xx answer to an *Error that carries what
// the client must see unaltered: the challenge, Retry-After and the body
// (at most MaxErrorBody of it). It reads resp.Body but does not close it.
func ErrorFromResponse(kind Kind, resp *http.Response) *Error {
	e := &Error{
		Status:           resp.StatusCode,
		Challenge:        strings.Join(resp.Header.Values("WWW-Authenticate"), ", "),
		RetryAfterHeader: resp.Header.Get("Retry-After"),
		ContentType:      resp.Header.Get("Content-Type"),
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	if err == nil && len(body) > 0 {
		e.Body = body
	} else {
		// A partial body is not the registry's answer; let the server
		// write its own.
		e.ContentType = ""
	}
	e.Code, e.Message = parseErrorBody(e.Body)
	if e.Code == "" {
		e.Code = codeForStatus(kind, resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("upstream answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

// codeForStatus is the OCI error code for a status when the answer named
// none.
func codeForStatus(kind Kind, status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return CodeUnauthorized
	case status == http.StatusForbidden:
		return CodeDenied
	case status == http.StatusNotFound && kind == KindBlob:
		return CodeBlobUnknown
	case status == http.StatusNotFound && kind.IsListing():
		return CodeNameUnknown
	case status == http.StatusNotFound:
		return CodeManifestUnknown
	case status == http.StatusMethodNotAllowed:
		return CodeUnsupported
	case status == http.StatusRequestedRangeNotSatisfiable:
		return CodeRangeInvalid
	case status == http.StatusTooManyRequests:
		return CodeTooManyRequests
	case status >= 500:
		return CodeUnavailable
	}
	return codeUnknown
}

// maxErrorMessage bounds the message taken from an error body.
const maxErrorMessage = 512

// parseErrorBody reads the first error of an OCI error body
// ({"errors":[{"code":..., "message":...}]}). A code that is not upper-case
// letters and underscores is dropped, since it may end up in logs and in
// cacheyd's own error JSON; the message is cut to valid UTF-8 of bounded
// length.
func parseErrorBody(body []byte) (code, message string) {
	var doc struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if len(body) == 0 || json.Unmarshal(body, &doc) != nil || len(doc.Errors) == 0 {
		return "", ""
	}
	first := doc.Errors[0]
	if validCode(first.Code) {
		code = first.Code
	}
	message = strings.ToValidUTF8(first.Message, "?")
	if len(message) > maxErrorMessage {
		message = message[:maxErrorMessage]
		for !utf8.ValidString(message) {
			message = message[:len(message)-1]
		}
	}
	return code, message
}

func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < 'A' || s[i] > 'Z') && s[i] != '_' {
			return false
		}
	}
	return true
}
