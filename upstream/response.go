package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/oci"
)

// MaxErrorBody bounds how much of an upstream error body is read and kept
// to be passed on.
const MaxErrorBody = 64 << 10

// codeUnknown is the code for an upstream status no other code fits, as
// Docker's registry spells it.
const codeUnknown = "UNKNOWN"

var (
	errTooManyRedirects = errors.New("stopped after 10 redirects")
	errDowngrade        = errors.New("refusing a redirect from https to http")
	// errBadResponse marks a 2xx answer cacheyd cannot use.
	errBadResponse = errors.New("unusable response")
)

// answer turns upstream's response into a Response or an *oci.Error. It owns
// resp.Body: it is either handed on in the Response or closed.
func (c *Client) answer(t target, req *oci.Request, resp *http.Response) (*oci.Response, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, upstreamError(req.Kind, resp)
	}
	c.remember(t, req, resp)
	out := &oci.Response{Size: resp.ContentLength, End: resp.ContentLength}
	if d, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil {
		out.Digest = d
	}
	if req.Kind == oci.KindManifest || req.Kind.IsListing() {
		out.MediaType = resp.Header.Get("Content-Type")
	}
	if req.Kind.IsListing() {
		// Passed on to the client (the server makes the Link point back
		// at cacheyd): only values that are safe as header values.
		out.Link = headerValue(resp.Header.Get("Link"))
		out.FiltersApplied = headerValue(resp.Header.Get("OCI-Filters-Applied"))
	}
	if resp.StatusCode == http.StatusPartialContent && req.Method == http.MethodGet {
		r, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err == nil {
			err = r.answers(req)
		}
		if err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("upstream %s: %w: %w: %s %s: %w", t.registry, oci.ErrUpstreamUnavailable, errBadResponse,
				req.Method, t.url(req), err)
		}
		out.Offset, out.End, out.Size = r.start, r.end+1, r.size
	}
	limit, bounded := bodyLimit(req.Kind)
	if bounded && out.Size > limit {
		resp.Body.Close()
		return nil, errTooLarge(t, req.Kind, out.Size)
	}
	c.labels.served(t.registry)
	if req.Method == http.MethodHead {
		resp.Body.Close()
		return out, nil
	}
	out.Body = &countingBody{ReadCloser: resp.Body, n: c.metrics.UpstreamBytes.WithLabelValues(c.labels.of(t.registry))}
	if bounded {
		// The size may be unknown (chunked) or a lie; the bytes are
		// counted too, whoever reads them: a fill, a tag lookup, a
		// listing or a pass-through straight to the client.
		out.Body = &boundedBody{ReadCloser: out.Body, left: limit - out.Offset, t: t, kind: req.Kind}
	}
	return out, nil
}

// bodyLimit is the largest body of kind cacheyd reads: a manifest up to
// oci.MaxManifestSize, the limit containerd applies too, a listing up to
// oci.MaxListingSize; blobs are not bounded.
func bodyLimit(kind oci.Kind) (int64, bool) {
	switch {
	case kind == oci.KindManifest:
		return oci.MaxManifestSize, true
	case kind.IsListing():
		return oci.MaxListingSize, true
	}
	return 0, false
}

// errTooLarge refuses a manifest or listing over its bodyLimit: 413
// SIZE_INVALID, as the cache answers a manifest that turns out larger while
// it is read. A size of -1 is one found out while reading.
func errTooLarge(t target, kind oci.Kind, size int64) *oci.Error {
	limit, _ := bodyLimit(kind)
	msg := fmt.Sprintf("upstream %s: %s exceeds %d bytes", t.registry, kind, limit)
	if size >= 0 {
		msg = fmt.Sprintf("upstream %s: %s of %d bytes exceeds %d", t.registry, kind, size, limit)
	}
	return oci.ErrTooLarge(msg)
}

// boundedBody fails a manifest or listing body that goes on past its
// bodyLimit, after passing on the bytes up to the limit.
type boundedBody struct {
	io.ReadCloser
	left int64 // bytes still allowed
	t    target
	kind oci.Kind
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: the body must end here.
		var probe [1]byte
		n, err := b.ReadCloser.Read(probe[:])
		if n > 0 {
			return 0, errTooLarge(b.t, b.kind, -1)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// countingBody counts the bytes read from upstream as they are read.
type countingBody struct {
	io.ReadCloser
	n prometheus.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(float64(n))
	}
	return n, err
}

// upstreamError maps a non-2xx answer to an *oci.Error that carries what
// the client must see unaltered: the challenge, Retry-After and the body.
func upstreamError(kind oci.Kind, resp *http.Response) *oci.Error {
	e := &oci.Error{
		Status:      resp.StatusCode,
		Challenge:   strings.Join(resp.Header.Values("WWW-Authenticate"), ", "),
		RetryAfter:  resp.Header.Get("Retry-After"),
		ContentType: resp.Header.Get("Content-Type"),
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	if err == nil && len(body) > 0 {
		e.Body = body
	} else {
		// A partial body is not upstream's answer; let the server write its own.
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

// codeForStatus is the OCI error code for a status when upstream sent none.
func codeForStatus(kind oci.Kind, status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return oci.CodeUnauthorized
	case status == http.StatusForbidden:
		return oci.CodeDenied
	case status == http.StatusNotFound && kind == oci.KindBlob:
		return oci.CodeBlobUnknown
	case status == http.StatusNotFound && kind.IsListing():
		return oci.CodeNameUnknown
	case status == http.StatusNotFound:
		return oci.CodeManifestUnknown
	case status == http.StatusMethodNotAllowed:
		return oci.CodeUnsupported
	case status == http.StatusRequestedRangeNotSatisfiable:
		return oci.CodeRangeInvalid
	case status == http.StatusTooManyRequests:
		return oci.CodeTooManyRequests
	case status >= 500:
		return oci.CodeUnavailable
	}
	return codeUnknown
}

// maxErrorMessage bounds the message taken from an upstream error body.
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

// contentRange is a parsed "bytes start-end/size"; size is -1 for "*".
type contentRange struct {
	start, end, size int64
}

// parseContentRange parses the Content-Range of a 206 (RFC 9110 14.4).
func parseContentRange(s string) (contentRange, error) {
	bad := func() (contentRange, error) {
		return contentRange{}, fmt.Errorf("bad Content-Range %.60q", s)
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
	var r contentRange
	var err1, err2 error
	r.start, err1 = parseLength(first)
	r.end, err2 = parseLength(last)
	if err1 != nil || err2 != nil || r.end < r.start {
		return bad()
	}
	r.size = -1
	if total != "*" {
		n, err := parseLength(total)
		if err != nil || n <= r.end {
			return bad()
		}
		r.size = n
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

// rangeOf is the Range header a GET for req sends, or "" for the whole
// object.
func rangeOf(req *oci.Request) string {
	switch {
	case req.Method != http.MethodGet:
		return ""
	case req.Suffix > 0:
		return fmt.Sprintf("bytes=-%d", req.Suffix)
	case req.Length > 0:
		return fmt.Sprintf("bytes=%d-%d", req.Offset, req.Offset+req.Length-1)
	case req.Offset > 0:
		return fmt.Sprintf("bytes=%d-", req.Offset)
	}
	return ""
}

// answers checks that a 206's range is the one req asked for: the start
// asked, and the end asked or the object's last byte before it.
func (r contentRange) answers(req *oci.Request) error {
	start, end := req.Offset, int64(-1) // end inclusive; -1: the object's last byte
	if req.Length > 0 {
		end = req.Offset + req.Length - 1
	}
	if req.Suffix > 0 {
		if r.size < 0 {
			return fmt.Errorf("range of an object of unknown size, asked for its last %d bytes", req.Suffix)
		}
		start = max(r.size-req.Suffix, 0)
	}
	last := r.size - 1 // -2 when the size is unknown
	switch {
	case r.start != start:
		return fmt.Errorf("range starts at %d, asked for %d", r.start, start)
	case end >= 0 && r.end != end && !(r.size >= 0 && r.end == last && end > last):
		return fmt.Errorf("range ends at %d, asked for %d", r.end, end)
	case end < 0 && r.size >= 0 && r.end != last:
		return fmt.Errorf("range ends at %d, short of the object's end at %d", r.end, last)
	}
	return nil
}

// maxPassedHeader bounds an upstream header value passed on to clients.
const maxPassedHeader = 4 << 10

// headerValue is an upstream header value to pass on, or "" when it is too
// long or holds control characters.
func headerValue(s string) string {
	if len(s) > maxPassedHeader || !validHeaderValue(s) {
		return ""
	}
	return s
}
