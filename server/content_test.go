package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

func TestRangeAndHead(t *testing.T) {
	const size = 100
	data := testData(size)
	etag := `"` + string(oci.FromBytes(data)) + `"`
	tests := []struct {
		name       string
		method     string
		rng        string
		ifRange    string
		wantStatus int
		wantRange  string // Content-Range
		wantBody   []byte // nil for HEAD and 416
		wantLength int64  // Content-Length
	}{
		{name: "whole", method: "GET", wantStatus: 200, wantBody: data, wantLength: size},
		{name: "head", method: "HEAD", wantStatus: 200, wantLength: size},
		{name: "head ignores range", method: "HEAD", rng: "bytes=0-9", wantStatus: 200, wantLength: size},
		{name: "first bytes", method: "GET", rng: "bytes=0-9", wantStatus: 206, wantRange: "bytes 0-9/100", wantBody: data[:10], wantLength: 10},
		{name: "open end", method: "GET", rng: "bytes=90-", wantStatus: 206, wantRange: "bytes 90-99/100", wantBody: data[90:], wantLength: 10},
		{name: "resume from middle", method: "GET", rng: "bytes=37-", wantStatus: 206, wantRange: "bytes 37-99/100", wantBody: data[37:], wantLength: 63},
		{name: "suffix", method: "GET", rng: "bytes=-10", wantStatus: 206, wantRange: "bytes 90-99/100", wantBody: data[90:], wantLength: 10},
		{name: "suffix longer than content", method: "GET", rng: "bytes=-1000", wantStatus: 206, wantRange: "bytes 0-99/100", wantBody: data, wantLength: size},
		{name: "end clipped", method: "GET", rng: "bytes=10-1000", wantStatus: 206, wantRange: "bytes 10-99/100", wantBody: data[10:], wantLength: 90},
		{name: "last byte", method: "GET", rng: "bytes=99-99", wantStatus: 206, wantRange: "bytes 99-99/100", wantBody: data[99:], wantLength: 1},
		{name: "unit is case-insensitive", method: "GET", rng: "BYTES=0-0", wantStatus: 206, wantRange: "bytes 0-0/100", wantBody: data[:1], wantLength: 1},
		{name: "start past end", method: "GET", rng: "bytes=100-", wantStatus: 416, wantRange: "bytes */100"},
		{name: "zero suffix", method: "GET", rng: "bytes=-0", wantStatus: 416, wantRange: "bytes */100"},
		{name: "ranges adding up to more than the object ignored", method: "GET", rng: "bytes=0-79,10-89", wantStatus: 200, wantBody: data, wantLength: size},
		{name: "reversed ignored", method: "GET", rng: "bytes=5-1", wantStatus: 200, wantBody: data, wantLength: size},
		{name: "other unit ignored", method: "GET", rng: "items=0-1", wantStatus: 200, wantBody: data, wantLength: size},
		{name: "garbage ignored", method: "GET", rng: "bytes=abc", wantStatus: 200, wantBody: data, wantLength: size},
		{name: "if-range matches", method: "GET", rng: "bytes=0-9", ifRange: etag, wantStatus: 206, wantRange: "bytes 0-9/100", wantBody: data[:10], wantLength: 10},
		{name: "if-range differs", method: "GET", rng: "bytes=0-9", ifRange: `"sha256:other"`, wantStatus: 200, wantBody: data, wantLength: size},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			c := src.serve(t, data, "")
			ts := startServer(t, Config{}, c)
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					h := http.Header{}
					if tt.rng != "" {
						h.Set("Range", tt.rng)
					}
					if tt.ifRange != "" {
						h.Set("If-Range", tt.ifRange)
					}
					resp, body, err := ts.do(t, tt.method, "/v2/app/blobs/"+string(oci.FromBytes(data)), h)
					if err != nil {
						t.Fatalf("body: %v", err)
					}
					line := ts.logs.wait(t, i+1)[i]
					c.released(t)
					if resp.StatusCode != tt.wantStatus {
						t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
					}
					if got := resp.Header.Get("Content-Range"); got != tt.wantRange {
						t.Errorf("Content-Range = %q, want %q", got, tt.wantRange)
					}
					if tt.wantStatus == 416 {
						if code := errorCode(t, body); code != oci.CodeRangeInvalid {
							t.Errorf("416 code = %q, want %s", code, oci.CodeRangeInvalid)
						}
						return
					}
					if resp.ContentLength != tt.wantLength {
						t.Errorf("Content-Length = %d, want %d", resp.ContentLength, tt.wantLength)
					}
					if string(body) != string(tt.wantBody) {
						t.Errorf("body = %q, want %q", body, tt.wantBody)
					}
					for k, want := range map[string]string{
						"Docker-Content-Digest": string(oci.FromBytes(data)),
						"Etag":                  etag,
						"Content-Type":          oci.BlobMediaType,
						"Accept-Ranges":         "bytes",
						apiVersionHeader:        apiVersion,
					} {
						if got := resp.Header.Get(k); got != want {
							t.Errorf("%s = %q, want %q", k, got, want)
						}
					}
					if tt.method == "GET" {
						if got := line["bytes"]; got != int64(len(tt.wantBody)) {
							t.Errorf("logged bytes = %v, want %d", got, len(tt.wantBody))
						}
						if got := line["source"]; got != src.source.String() {
							t.Errorf("logged source = %v, want %s", got, src.source)
						}
					}
				})
			}
		})
	}
}

// TestHeadSendsNoBody proves with pipelined raw requests that a HEAD's
// response carries Content-Length but no body bytes: if it did, the second
// response would not parse.
func TestHeadSendsNoBody(t *testing.T) {
	data := testData(5000)
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			c := src.serve(t, data, manifestType)
			ts := startServer(t, Config{}, c)
			conn, err := ts.ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			target := "/v2/app/manifests/" + string(oci.FromBytes(data))
			if _, err := fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", target); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			head, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
			if err != nil {
				t.Fatal(err)
			}
			if head.StatusCode != 200 || head.Header.Get("Content-Length") != strconv.Itoa(len(data)) {
				t.Errorf("HEAD: status %d, Content-Length %q, want 200 and %d", head.StatusCode, head.Header.Get("Content-Length"), len(data))
			}
			if ct := head.Header.Get("Content-Type"); ct != manifestType {
				t.Errorf("HEAD Content-Type = %q", ct)
			}
			next, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("response after HEAD does not parse (HEAD sent a body?): %v", err)
			}
			body, _ := io.ReadAll(next.Body)
			if next.StatusCode != 200 || string(body) != "{}" {
				t.Errorf("GET /v2/ after HEAD: %d %q", next.StatusCode, body)
			}
			ts.logs.wait(t, 2)
			c.released(t)
		})
	}
}

// TestManifestWithoutMediaType: a manifest whose type the cache does not
// name goes without Content-Type rather than with a made-up one. The real
// cache always names one (a generic type when the registry named none), so
// a wrapper takes its answer's type away.
func TestManifestWithoutMediaType(t *testing.T) {
	im := newImage()
	c := newTestCache(t, im.origin, nil)
	untyped := cacheFunc(func(ctx context.Context, req *oci.Request) (*cache.Object, error) {
		obj, err := c.Get(ctx, req)
		if err == nil {
			obj.MediaType = ""
		}
		return obj, err
	})
	ts := startServer(t, Config{}, untyped)
	for _, method := range []string{"GET", "HEAD"} {
		resp, body, err := ts.do(t, method, "/v2/app/manifests/v1", nil)
		if err != nil || resp.StatusCode != 200 || (method == "GET" && string(body) != string(im.manifest)) {
			t.Fatalf("%s: %v %d %q", method, err, resp.StatusCode, body)
		}
		if ct, ok := resp.Header["Content-Type"]; ok {
			t.Errorf("%s: Content-Type = %q, want none", method, ct)
		}
	}
}

// TestHeadOfUnknownSize: a tag whose registry names neither size nor digest
// on HEAD is answered so, as a GET of unknown size would be (chunked, no
// Accept-Ranges, no digest); a GET of it then has both.
func TestHeadOfUnknownSize(t *testing.T) {
	const indexType = "application/vnd.oci.image.index.v1+json"
	data := []byte(`{"schemaVersion":2,"mediaType":"` + indexType + `","manifests":[]}`)
	o := origintest.New()
	o.Tag("v1", o.Add(data, indexType))
	ts := startServer(t, Config{}, newTestCache(t, origintest.NoDigest(origintest.UnknownSize(o)), nil))
	resp, body, err := ts.do(t, "HEAD", "/v2/app/manifests/v1", nil)
	if err != nil || resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %v %d %q", err, resp.StatusCode, body)
	}
	if resp.ContentLength != -1 || resp.Header.Get("Accept-Ranges") != "" || resp.Header.Get("Docker-Content-Digest") != "" {
		t.Errorf("Content-Length %d, Accept-Ranges %q, Docker-Content-Digest %q: want unknown, none, none",
			resp.ContentLength, resp.Header.Get("Accept-Ranges"), resp.Header.Get("Docker-Content-Digest"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != indexType {
		t.Errorf("HEAD Content-Type %q, want %q", ct, indexType)
	}
	resp, body, err = ts.do(t, "GET", "/v2/app/manifests/v1", nil)
	if err != nil || resp.StatusCode != 200 || string(body) != string(data) {
		t.Fatalf("GET: %v %d %q", err, resp.StatusCode, body)
	}
	if resp.ContentLength != int64(len(data)) || resp.Header.Get("Docker-Content-Digest") != string(oci.FromBytes(data)) {
		t.Errorf("GET: Content-Length %d, Docker-Content-Digest %q; want %d, %s",
			resp.ContentLength, resp.Header.Get("Docker-Content-Digest"), len(data), oci.FromBytes(data))
	}
}

// TestGetWithoutBody: a GET the cache answers without a body is a cache
// bug, answered 500, never an empty 200. The real cache gives every GET a
// body, so a function stands in for it.
func TestGetWithoutBody(t *testing.T) {
	ts := startServer(t, Config{}, cacheFunc(func(context.Context, *oci.Request) (*cache.Object, error) {
		return &cache.Object{Digest: digestA, MediaType: oci.BlobMediaType, Size: 10, Source: cache.SourceDisk}, nil
	}))
	resp, body, _ := ts.do(t, "GET", "/v2/app/blobs/"+string(digestA), nil)
	if resp.StatusCode != 500 || errorCode(t, body) != "UNKNOWN" {
		t.Errorf("GET without body: %d %s, want 500 UNKNOWN", resp.StatusCode, body)
	}
	if line := ts.logs.wait(t, 1)[0]; line["err"] != errNoBody.Error() {
		t.Errorf("access line err %v, want %q", line["err"], errNoBody)
	}
}

func TestServerHeader(t *testing.T) {
	for _, name := range []string{"", "cacheyd"} {
		ts := startServer(t, Config{Name: name}, newTestCache(t, origintest.New(), nil))
		resp, _, _ := ts.do(t, "GET", "/v2/", nil)
		if got, ok := resp.Header["Server"]; (name == "" && ok) || (name != "" && (len(got) != 1 || got[0] != name)) {
			t.Errorf("Name %q: Server header %q", name, got)
		}
	}
}
