package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

func TestWriteError(t *testing.T) {
	upstreamBody := []byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"org/private","Action":"pull"}]}]}`)
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantHeader map[string]string
		wantBody   string // exact body; "" to check the code only
		wantCode   string
	}{
		{
			name: "upstream 401 passes through unaltered",
			err: fmt.Errorf("fill: %w", &oci.Error{
				Status: 401, Code: oci.CodeUnauthorized, Message: "authentication required",
				Challenge: challenge, Body: upstreamBody, ContentType: "application/json; charset=utf-8",
			}),
			wantStatus: 401,
			wantHeader: map[string]string{"WWW-Authenticate": challenge, "Content-Type": "application/json; charset=utf-8"},
			wantBody:   string(upstreamBody),
		},
		{
			name: "upstream 429 keeps Retry-After and its own body",
			err: &oci.Error{
				Status: 429, Code: oci.CodeTooManyRequests, RetryAfterHeader: "30",
				Body: []byte("slow down"), ContentType: "text/plain",
			},
			wantStatus: 429,
			wantHeader: map[string]string{"Retry-After": "30", "Content-Type": "text/plain"},
			wantBody:   "slow down",
		},
		{
			name:       "upstream error with an empty body",
			err:        &oci.Error{Status: 403, Code: oci.CodeDenied, Body: []byte{}},
			wantStatus: 403,
			wantBody:   "",
		},
		{
			name:       "own error as OCI JSON",
			err:        oci.ErrBlobUnknown(digestA),
			wantStatus: 404,
			wantHeader: map[string]string{"Content-Type": "application/json"},
			wantBody:   `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown: ` + string(digestA) + `","detail":null}]}`,
		},
		{
			name:       "own 401 with a challenge and no body",
			err:        &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Message: "auth", Challenge: challenge},
			wantStatus: 401,
			wantHeader: map[string]string{"WWW-Authenticate": challenge},
			wantCode:   oci.CodeUnauthorized,
		},
		{
			name:       "upstream unavailable is a fast 502",
			err:        fmt.Errorf("dial registry-1.docker.io: %w", oci.ErrUpstreamUnavailable),
			wantStatus: 502,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "a transfer upstream failed is a 502",
			err:        fmt.Errorf("fill sha256:abc: %w: read upstream after 10 bytes: unexpected EOF", oci.ErrUpstreamFault),
			wantStatus: 502,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "upstream timeout is 504, though it is also unavailable",
			err:        fmt.Errorf("upstream registry.example.test: %w: %w", oci.ErrUpstreamUnavailable, oci.ErrUpstreamTimeout),
			wantStatus: 504,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "upstream timeout alone is 504",
			err:        fmt.Errorf("tag lookup: %w", oci.ErrUpstreamTimeout),
			wantStatus: 504,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "a deadline is 504",
			err:        fmt.Errorf("fill sha256:abc: %w", context.DeadlineExceeded),
			wantStatus: 504,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "a deadline beside unavailable is 504",
			err:        fmt.Errorf("dial: %w: %w", oci.ErrUpstreamUnavailable, context.DeadlineExceeded),
			wantStatus: 504,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "a registry's own 503 stays its answer",
			err:        fmt.Errorf("fill: %w", &oci.Error{Status: 503, Code: oci.CodeUnavailable, Message: "maintenance", Err: context.DeadlineExceeded}),
			wantStatus: 503,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "the client left",
			err:        fmt.Errorf("%w: %w", errClientGone, context.Canceled),
			wantStatus: statusClientClosed,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "cancelled while shutting down",
			err:        fmt.Errorf("fill wait: %w", context.Canceled),
			wantStatus: 503,
			wantCode:   oci.CodeUnavailable,
		},
		{
			name:       "anything else is a generic 500",
			err:        errBoom,
			wantStatus: 500,
			wantBody:   `{"errors":[{"code":"UNKNOWN","message":"internal error","detail":null}]}`,
		},
		{
			name:       "an oci.Error with no usable status is a 500",
			err:        &oci.Error{Code: "WHATEVER", Message: "secret detail"},
			wantStatus: 500,
			wantBody:   `{"errors":[{"code":"UNKNOWN","message":"internal error","detail":null}]}`,
		},
		{
			name:       "405 carries Allow",
			err:        errMethod("PUT", "GET, HEAD"),
			wantStatus: 405,
			wantHeader: map[string]string{"Allow": "GET, HEAD"},
			wantCode:   oci.CodeUnsupported,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp fasthttp.Response
			resp.Header.SetNoDefaultContentType(true)
			if got := writeError(&resp, tt.err); got != tt.wantStatus {
				t.Errorf("writeError returned %d, want %d", got, tt.wantStatus)
			}
			if resp.StatusCode() != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode(), tt.wantStatus)
			}
			for k, want := range tt.wantHeader {
				if got := string(resp.Header.Peek(k)); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			body := resp.Body()
			if tt.wantCode != "" {
				if got := errorCode(t, body); got != tt.wantCode {
					t.Errorf("code = %q, want %q (body %s)", got, tt.wantCode, body)
				}
			} else if diff := cmp.Diff(tt.wantBody, string(body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if strings.Contains(string(body), "secret") {
				t.Errorf("body leaks internals: %s", body)
			}
		})
	}
}

// TestUpstreamChallengeThroughServer: containerd must see upstream's own 401,
// challenge and body, on GET and HEAD, so it can authenticate with the
// registry's realm and retry with Authorization, which is forwarded.
func TestUpstreamChallengeThroughServer(t *testing.T) {
	upstreamBody := `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`
	im := newImage()
	refusal := &oci.Error{
		Status: 401, Code: oci.CodeUnauthorized, Challenge: challenge,
		Body: []byte(upstreamBody), ContentType: "application/json",
	}
	fc := &spyCache{Cache: newTestCache(t, origintest.PrivateWith(im.origin, "Bearer good", refusal), nil)}
	ts := startServer(t, Config{}, fc)
	const target = "/v2/org/private/manifests/v1?ns=registry.example.test"
	for _, method := range []string{"GET", "HEAD"} {
		resp, body, err := ts.do(t, method, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != challenge || resp.Header.Get(apiVersionHeader) != apiVersion {
			t.Errorf("%s: status %d, WWW-Authenticate %q, %s %q", method, resp.StatusCode,
				resp.Header.Get("WWW-Authenticate"), apiVersionHeader, resp.Header.Get(apiVersionHeader))
		}
		if method == "GET" && string(body) != upstreamBody {
			t.Errorf("GET body = %q, want upstream's %q", body, upstreamBody)
		}
		if method == "HEAD" && resp.ContentLength != int64(len(upstreamBody)) {
			t.Errorf("HEAD Content-Length = %d, want %d", resp.ContentLength, len(upstreamBody))
		}
	}
	// The origin answers only the client's own credentials.
	resp, body, err := ts.do(t, "GET", target, http.Header{"Authorization": {"Bearer good"}})
	if err != nil || resp.StatusCode != 200 || string(body) != string(im.manifest) {
		t.Fatalf("retry with Authorization: %v, %d %q", err, resp.StatusCode, body)
	}
	reqs := fc.requests()
	if got := reqs[len(reqs)-1].Authorization; got != "Bearer good" {
		t.Errorf("Authorization forwarded as %q", got)
	}
}

// TestUnavailableAndInternal go through the server: 502 for an upstream
// that cannot be reached, 500 without details for anything unexpected, and
// the cause in the access line.
func TestUnavailableAndInternal(t *testing.T) {
	o := origintest.New()
	unreachable := fmt.Errorf("connect: %w", oci.ErrUpstreamUnavailable)
	failUnreachable := origintest.Fail(o, unreachable).Off()
	failBoom := origintest.Fail(failUnreachable, errBoom).Off() // answers over the one beneath
	ts := startServer(t, Config{}, newTestCache(t, failBoom, nil))
	for i, tt := range []struct {
		fault *origintest.Fault
		err   error
		want  int
	}{{failUnreachable, unreachable, 502}, {failBoom, errBoom, 500}} {
		tt.fault.Always()
		resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(digestA), nil)
		if err != nil || resp.StatusCode != tt.want {
			t.Fatalf("status %d (%v), want %d", resp.StatusCode, err, tt.want)
		}
		if strings.Contains(string(body), "secret") {
			t.Errorf("body leaks internals: %s", body)
		}
		line := ts.logs.wait(t, i+1)[i]
		if e, _ := line["err"].(string); !strings.Contains(e, tt.err.Error()) || line["source"] != "error" {
			t.Errorf("access line err=%v source=%v, want %q within and error", line["err"], line["source"], tt.err)
		}
	}
}

// TestErrorHeadersForHeadAsForGet: a HEAD that meets an error gets every
// header a GET meeting the same error gets (status, Content-Type,
// Content-Length, WWW-Authenticate, Retry-After, the API version, Allow),
// and no body: errors cacheyd makes, upstream answers passed through with
// their body, and upstream answers without one (as an upstream HEAD's are).
func TestErrorHeadersForHeadAsForGet(t *testing.T) {
	upstreamBody := []byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`)
	tests := []struct {
		name   string
		target string
		err    error // the origin's answer
		want   int
	}{
		{name: "no endpoint", target: "/v2/app/nope", want: 404},
		{name: "bad name", target: "/v2/BAD/manifests/v1", want: 400},
		{name: "duplicate ns", target: "/v2/app/manifests/v1?ns=ghcr.io&ns=quay.io", want: 400},
		{name: "push", target: "/v2/app/blobs/uploads/", want: 405},
		{
			name: "upstream 401 with challenge and body", target: "/v2/org/private/manifests/v1",
			err:  &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Challenge: challenge, Body: upstreamBody, ContentType: "application/json; charset=utf-8"},
			want: 401,
		},
		{
			name: "upstream 401 from a HEAD, without body", target: "/v2/org/private/manifests/v1",
			err:  &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Message: "upstream answered 401 Unauthorized", Challenge: challenge},
			want: 401,
		},
		{
			name: "upstream 429 with Retry-After and body", target: "/v2/app/manifests/v1",
			err:  &oci.Error{Status: 429, Code: oci.CodeTooManyRequests, RetryAfterHeader: "30", Body: []byte("slow down"), ContentType: "text/plain"},
			want: 429,
		},
		{
			name: "upstream 429 with Retry-After, without body", target: "/v2/app/blobs/" + string(digestA),
			err:  &oci.Error{Status: 429, Code: oci.CodeTooManyRequests, Message: "upstream answered 429", RetryAfterHeader: "30"},
			want: 429,
		},
		{
			name: "upstream error with an empty body", target: "/v2/app/manifests/v1",
			err:  &oci.Error{Status: 403, Code: oci.CodeDenied, Body: []byte{}},
			want: 403,
		},
		{
			name: "upstream timeout", target: "/v2/app/manifests/v1",
			err:  fmt.Errorf("upstream: %w: %w", oci.ErrUpstreamUnavailable, oci.ErrUpstreamTimeout),
			want: 504,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, Config{}, newTestCache(t, origintest.Fail(origintest.New(), tt.err), nil))
			get, getBody, err := ts.do(t, "GET", tt.target, nil)
			if err != nil || get.StatusCode != tt.want {
				t.Fatalf("GET: %v, status %d, want %d", err, get.StatusCode, tt.want)
			}
			head, headBody, err := ts.do(t, "HEAD", tt.target, nil)
			if err != nil || head.StatusCode != get.StatusCode {
				t.Fatalf("HEAD: %v, status %d, GET's %d", err, head.StatusCode, get.StatusCode)
			}
			if len(headBody) != 0 {
				t.Errorf("HEAD has a body of %d bytes", len(headBody))
			}
			if cl := get.Header.Get("Content-Length"); cl != strconv.Itoa(len(getBody)) {
				t.Errorf("GET Content-Length %q for a body of %d bytes", cl, len(getBody))
			}
			getHeader, headHeader := get.Header.Clone(), head.Header.Clone()
			getHeader.Del("Date")
			headHeader.Del("Date")
			if diff := cmp.Diff(getHeader, headHeader); diff != "" {
				t.Errorf("headers (-GET +HEAD):\n%s", diff)
			}
			for _, k := range []string{"Content-Length", apiVersionHeader} {
				if _, ok := head.Header[http.CanonicalHeaderKey(k)]; !ok {
					t.Errorf("HEAD without %s", k)
				}
			}
		})
	}
}
