package upstream

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/oci"
)

var content = []byte("0123456789")

func TestContentAnswers(t *testing.T) {
	digest := oci.FromBytes(content)
	tests := []struct {
		name     string
		req      *oci.Request
		handler  http.HandlerFunc
		want     oci.Response // Body compared as wantBody
		wantBody string
	}{
		{
			name: "manifest GET",
			req:  manifestRequest("GET", "v1"),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Docker-Content-Digest", string(digest))
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				w.Write(content)
			},
			want:     oci.Response{Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 10, End: 10},
			wantBody: "0123456789",
		},
		{
			name: "manifest HEAD has no body but a size",
			req:  manifestRequest("HEAD", "v1"),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Docker-Content-Digest", string(digest))
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				w.Header().Set("Content-Length", "10")
			},
			want: oci.Response{Digest: digest, MediaType: "application/vnd.oci.image.index.v1+json", Size: 10, End: 10},
		},
		{
			name: "invalid digest header is ignored",
			req:  blobRequest("GET", content),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Docker-Content-Digest", "sha256:ZZ")
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Write(content)
			},
			want:     oci.Response{Size: 10, End: 10},
			wantBody: "0123456789",
		},
		{
			name: "unknown length",
			req:  blobRequest("GET", content),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write(content[:5])
				http.NewResponseController(w).Flush()
				w.Write(content[5:])
			},
			want:     oci.Response{Size: -1, End: -1},
			wantBody: "0123456789",
		},
		{
			name: "range honoured",
			req:  withOffset(blobRequest("GET", content), 4),
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") != "bytes=4-" {
					t.Errorf("Range = %q", r.Header.Get("Range"))
				}
				w.Header().Set("Content-Range", "bytes 4-9/10")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[4:])
			},
			want:     oci.Response{Size: 10, Offset: 4, End: 10},
			wantBody: "456789",
		},
		{
			name: "range of unknown total",
			req:  withOffset(blobRequest("GET", content), 4),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", "bytes 4-9/*")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[4:])
			},
			want:     oci.Response{Size: -1, Offset: 4, End: 10},
			wantBody: "456789",
		},
		{
			name: "range ignored: whole object from 0",
			req:  withOffset(blobRequest("GET", content), 4),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write(content)
			},
			want:     oci.Response{Size: 10, Offset: 0, End: 10},
			wantBody: "0123456789",
		},
		{
			name: "a window honoured",
			req:  withWindow(blobRequest("GET", content), 2, 3),
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") != "bytes=2-4" {
					t.Errorf("Range = %q", r.Header.Get("Range"))
				}
				w.Header().Set("Content-Range", "bytes 2-4/10")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[2:5])
			},
			want:     oci.Response{Size: 10, Offset: 2, End: 5},
			wantBody: "234",
		},
		{
			name: "a window past the end ends at the object's end",
			req:  withWindow(blobRequest("GET", content), 8, 5),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", "bytes 8-9/10")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[8:])
			},
			want:     oci.Response{Size: 10, Offset: 8, End: 10},
			wantBody: "89",
		},
		{
			name: "a suffix honoured",
			req:  withSuffix(blobRequest("GET", content), 3),
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") != "bytes=-3" {
					t.Errorf("Range = %q", r.Header.Get("Range"))
				}
				w.Header().Set("Content-Range", "bytes 7-9/10")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[7:])
			},
			want:     oci.Response{Size: 10, Offset: 7, End: 10},
			wantBody: "789",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serveRegistry(t, Config{}, tt.handler)
			got, err := c.Fetch(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			body := readBody(t, got)
			if diff := cmp.Diff(tt.want, *got, cmpopts.IgnoreFields(oci.Response{}, "Body")); diff != "" {
				t.Errorf("Response (-want +got):\n%s", diff)
			}
			if (got.Body == nil) != (tt.req.Method == "HEAD") {
				t.Errorf("Body = %v for %s", got.Body, tt.req.Method)
			}
			if body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if n := testutil.ToFloat64(c.metrics.UpstreamBytes.WithLabelValues(testRegistry)); int(n) != len(tt.wantBody) {
				t.Errorf("UpstreamBytes = %v, want %d", n, len(tt.wantBody))
			}
		})
	}
}

func withOffset(r *oci.Request, off int64) *oci.Request {
	r.Offset = off
	return r
}

func withWindow(r *oci.Request, off, n int64) *oci.Request {
	r.Offset, r.Length = off, n
	return r
}

func withSuffix(r *oci.Request, n int64) *oci.Request {
	r.Suffix = n
	return r
}

func TestUnusablePartialContent(t *testing.T) {
	for _, cr := range []string{"bytes 3-9/10", "bytes 4-9", "items 4-9/10", "bytes 4-3/10", ""} {
		t.Run(cr, func(t *testing.T) {
			c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
				if cr != "" {
					w.Header().Set("Content-Range", cr)
				}
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[4:])
			})
			_, err := c.Fetch(t.Context(), withOffset(blobRequest("GET", content), 4))
			if !errors.Is(err, oci.ErrUpstreamUnavailable) || !errors.Is(err, errBadResponse) {
				t.Fatalf("Fetch = %v, want a bad response marked upstream unavailable", err)
			}
		})
	}
	// A range other than the window or suffix asked for is no answer either.
	for _, tt := range []struct {
		name string
		req  *oci.Request
		cr   string
	}{
		{"window cut short", withWindow(blobRequest("GET", content), 2, 5), "bytes 2-4/10"},
		{"window run long", withWindow(blobRequest("GET", content), 2, 3), "bytes 2-9/10"},
		{"suffix elsewhere", withSuffix(blobRequest("GET", content), 3), "bytes 6-9/10"},
		{"suffix of an unknown size", withSuffix(blobRequest("GET", content), 3), "bytes 7-9/*"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", tt.cr)
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[2:5])
			})
			if _, err := c.Fetch(t.Context(), tt.req); !errors.Is(err, errBadResponse) {
				t.Fatalf("Fetch = %v, want a bad response", err)
			}
		})
	}
}

func TestErrorAnswers(t *testing.T) {
	ociBody := `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]}`
	tests := []struct {
		name    string
		req     *oci.Request
		status  int
		header  map[string]string
		body    string
		want    oci.Error
		bodyLen int // when the body is too long to spell out
		asked   int // requests sent, when not 1
	}{
		{
			name: "OCI error body passed on", req: manifestRequest("GET", "v9"), status: 404,
			header: map[string]string{"Content-Type": "application/json"}, body: ociBody,
			want: oci.Error{Status: 404, Code: "MANIFEST_UNKNOWN", Message: "manifest unknown",
				Body: []byte(ociBody), ContentType: "application/json"},
		},
		{
			name: "blob 404 without body", req: blobRequest("GET", content), status: 404,
			want: oci.Error{Status: 404, Code: oci.CodeBlobUnknown, Message: "upstream answered 404 Not Found"},
		},
		{
			name: "manifest HEAD 404", req: manifestRequest("HEAD", "v9"), status: 404,
			want: oci.Error{Status: 404, Code: oci.CodeManifestUnknown, Message: "upstream answered 404 Not Found"},
		},
		{
			name: "401 keeps the challenge unaltered", req: manifestRequest("GET", "v1"), status: 401,
			header: map[string]string{"WWW-Authenticate": `Bearer realm="https://auth.example/token",service="x",scope="repository:team/app:pull"`},
			want: oci.Error{Status: 401, Code: oci.CodeUnauthorized, Message: "upstream answered 401 Unauthorized",
				Challenge: `Bearer realm="https://auth.example/token",service="x",scope="repository:team/app:pull"`},
			asked: 2, // refused as cacheyd, then asked anonymously
		},
		{
			name: "403", req: blobRequest("GET", content), status: 403,
			want:  oci.Error{Status: 403, Code: oci.CodeDenied, Message: "upstream answered 403 Forbidden"},
			asked: 2,
		},
		{
			name: "429 keeps Retry-After", req: manifestRequest("HEAD", "v1"), status: 429,
			header: map[string]string{"Retry-After": "17"},
			want: oci.Error{Status: 429, Code: oci.CodeTooManyRequests, Message: "upstream answered 429 Too Many Requests",
				RetryAfterHeader: "17"},
		},
		{
			name: "503 with a text body", req: blobRequest("GET", content), status: 503,
			header: map[string]string{"Content-Type": "text/plain"}, body: "down for maintenance",
			want: oci.Error{Status: 503, Code: oci.CodeUnavailable, Message: "upstream answered 503 Service Unavailable",
				Body: []byte("down for maintenance"), ContentType: "text/plain"},
		},
		{
			name: "416", req: withOffset(blobRequest("GET", content), 99), status: 416,
			want: oci.Error{Status: 416, Code: oci.CodeRangeInvalid, Message: "upstream answered 416 Requested Range Not Satisfiable"},
		},
		{
			name: "odd status", req: blobRequest("GET", content), status: 418,
			want: oci.Error{Status: 418, Code: "UNKNOWN", Message: "upstream answered 418 I'm a teapot"},
		},
		{
			name: "bad code in body falls back", req: blobRequest("GET", content), status: 404,
			header: map[string]string{"Content-Type": "application/json"},
			body:   `{"errors":[{"code":"<script>","message":"m"}]}`,
			want: oci.Error{Status: 404, Code: oci.CodeBlobUnknown, Message: "m",
				Body: []byte(`{"errors":[{"code":"<script>","message":"m"}]}`), ContentType: "application/json"},
		},
		{
			name: "long body is cut", req: blobRequest("GET", content), status: 500,
			body:    strings.Repeat("x", MaxErrorBody+100),
			want:    oci.Error{Status: 500, Code: oci.CodeUnavailable, Message: "upstream answered 500 Internal Server Error"},
			bodyLen: MaxErrorBody,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			})
			_, err := c.Fetch(t.Context(), tt.req)
			e, ok := oci.AsError(err)
			if !ok {
				t.Fatalf("Fetch = %v, want *oci.Error", err)
			}
			if errors.Is(err, oci.ErrUpstreamUnavailable) {
				t.Errorf("an answer is not ErrUpstreamUnavailable: %v", err)
			}
			got := *e
			if !got.Upstream {
				t.Errorf("a registry's answer is not marked as the registry's (Upstream)")
			}
			got.Upstream = false
			if tt.bodyLen > 0 {
				if len(got.Body) != tt.bodyLen {
					t.Errorf("len(Body) = %d, want %d", len(got.Body), tt.bodyLen)
				}
				got.Body, got.ContentType = nil, ""
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Error (-want +got):\n%s", diff)
			}
			if n, want := counter(c, testRegistry, tt.req.Method, tt.req.Kind.String(), strconv.Itoa(tt.status)), max(tt.asked, 1); n != want {
				t.Errorf("UpstreamRequests{code=%d} = %d, want %d", tt.status, n, want)
			}
		})
	}
}
