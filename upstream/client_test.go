package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/oci"
)

// sentHeaders is what the tests look at in a request cacheyd sent.
type sentHeaders struct {
	Method, Path, Accept, AcceptEncoding, Range, Authorization, UserAgent string
}

func TestRequestHeaders(t *testing.T) {
	all := strings.Join(oci.ManifestMediaTypes, ", ")
	tests := []struct {
		name string
		req  *oci.Request
		ua   string
		want sentHeaders
	}{
		{
			name: "manifest GET accepts every manifest type",
			req:  manifestRequest("GET", "v1"),
			want: sentHeaders{Method: "GET", Path: "/v2/team/app/manifests/v1", Accept: all, AcceptEncoding: "identity", UserAgent: "cacheyd"},
		},
		{
			name: "manifest HEAD stays HEAD, with the caller's Accept",
			req: func() *oci.Request {
				r := manifestRequest("HEAD", "v1")
				r.Accept = []string{"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"}
				return r
			}(),
			ua: "cacheyd/1.2",
			want: sentHeaders{Method: "HEAD", Path: "/v2/team/app/manifests/v1",
				Accept:         "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
				AcceptEncoding: "identity", UserAgent: "cacheyd/1.2"},
		},
		{
			name: "manifest by digest",
			req: &oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: testRegistry, Repository: "team/app",
				Reference: oci.Reference{Digest: oci.FromBytes(content)}},
			want: sentHeaders{Method: "GET", Path: "/v2/team/app/manifests/" + string(oci.FromBytes(content)), Accept: all, AcceptEncoding: "identity", UserAgent: "cacheyd"},
		},
		{
			name: "blob GET from an offset asks for a range",
			req:  withOffset(blobRequest("GET", content), 1234),
			want: sentHeaders{Method: "GET", Path: "/v2/team/app/blobs/" + string(oci.FromBytes(content)), AcceptEncoding: "identity", Range: "bytes=1234-", UserAgent: "cacheyd"},
		},
		{
			name: "blob HEAD never asks for a range",
			req:  withOffset(blobRequest("HEAD", content), 1234),
			want: sentHeaders{Method: "HEAD", Path: "/v2/team/app/blobs/" + string(oci.FromBytes(content)), AcceptEncoding: "identity", UserAgent: "cacheyd"},
		},
		{
			name: "client Authorization forwarded unaltered",
			req: func() *oci.Request {
				r := blobRequest("GET", content)
				r.Authorization = "Bearer client-token"
				return r
			}(),
			want: sentHeaders{Method: "GET", Path: "/v2/team/app/blobs/" + string(oci.FromBytes(content)), AcceptEncoding: "identity", Authorization: "Bearer client-token", UserAgent: "cacheyd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex // guards sent
			var sent []sentHeaders
			c := serveRegistry(t, Config{UserAgent: tt.ua}, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				sent = append(sent, sentHeaders{
					Method: r.Method, Path: r.URL.Path, Accept: r.Header.Get("Accept"),
					AcceptEncoding: r.Header.Get("Accept-Encoding"), Range: r.Header.Get("Range"),
					Authorization: r.Header.Get("Authorization"), UserAgent: r.Header.Get("User-Agent"),
				})
			})
			resp, err := c.Fetch(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			readBody(t, resp)
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff([]sentHeaders{tt.want}, sent); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	c := newClient(t, Config{})
	good := blobRequest("GET", content)
	tests := []struct {
		name   string
		change func(r *oci.Request)
		status int
	}{
		{"POST", func(r *oci.Request) { r.Method = "POST" }, 405},
		{"no method", func(r *oci.Request) { r.Method = "" }, 405},
		{"tags with a reference", func(r *oci.Request) { r.Kind = oci.KindTags }, 400},
		{"catalog", func(r *oci.Request) { r.Kind = oci.KindCatalog }, 405},
		{"upload", func(r *oci.Request) { r.Kind = oci.KindUpload }, 405},
		{"referrers without digest", func(r *oci.Request) { r.Kind, r.Reference = oci.KindReferrers, oci.Reference{} }, 400},
		{"n of a blob", func(r *oci.Request) { r.List.N = "1" }, 400},
		{"bad n", func(r *oci.Request) { r.Kind, r.Reference, r.List.N = oci.KindTags, oci.Reference{}, "x" }, 400},
		{"blob by tag", func(r *oci.Request) { r.Reference = oci.Reference{Tag: "v1"} }, 400},
		{"forged digest", func(r *oci.Request) { r.Reference = oci.Reference{Digest: "sha256:../../x"} }, 400},
		{"manifest with bad tag", func(r *oci.Request) { r.Kind, r.Reference = oci.KindManifest, oci.Reference{Tag: "a/b"} }, 400},
		{"bad repository", func(r *oci.Request) { r.Repository = "Team/../app" }, 400},
		{"bad registry", func(r *oci.Request) { r.Registry = "bad_host" }, 400},
		{"negative offset", func(r *oci.Request) { r.Offset = -1 }, 416},
		{"header splitting in Authorization", func(r *oci.Request) { r.Authorization = "Bearer x\r\nX-Evil: 1" }, 400},
		{"header splitting in Accept", func(r *oci.Request) { r.Accept = []string{"a/b\nX-Evil: 1"} }, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := *good
			tt.change(&r)
			_, err := c.Fetch(t.Context(), &r)
			if e, ok := oci.AsError(err); !ok || e.Status != tt.status {
				t.Errorf("Fetch = %v, want an *oci.Error with status %d", err, tt.status)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	c := newClient(t, Config{RegistryURLs: map[string]string{
		"index.docker.io":   "http://127.0.0.1:5000/", // an alias of docker.io
		"mirror.example:81": "https://Mirror.Internal",
	}})
	tests := []struct{ registry, want string }{
		{"docker.io", "http://127.0.0.1:5000/v2/library/alpine/manifests/v1"},
		{"mirror.example:81", "https://mirror.internal/v2/library/alpine/manifests/v1"},
		{"ghcr.io", "https://ghcr.io/v2/library/alpine/manifests/v1"},
		{"Quay.IO:8443", "https://quay.io:8443/v2/library/alpine/manifests/v1"},
	}
	for _, tt := range tests {
		tg, err := c.route(&oci.Request{Method: "GET", Kind: oci.KindManifest, Registry: tt.registry,
			Repository: "library/alpine", Reference: oci.Reference{Tag: "v1"}})
		if err != nil {
			t.Errorf("route(%s): %v", tt.registry, err)
			continue
		}
		if got := tg.url(&oci.Request{Kind: oci.KindManifest, Reference: oci.Reference{Tag: "v1"}}); got != tt.want {
			t.Errorf("route(%s) = %s, want %s", tt.registry, got, tt.want)
		}
	}
	unmapped := newClient(t, Config{})
	tg, err := unmapped.route(&oci.Request{Method: "GET", Kind: oci.KindBlob, Registry: "docker.io",
		Repository: "library/alpine", Reference: oci.Reference{Digest: oci.FromBytes(content)}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tg.url(&oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: oci.FromBytes(content)}}), "https://registry-1.docker.io/v2/library/alpine/blobs/"+string(oci.FromBytes(content)); got != want {
		t.Errorf("docker.io routes to %s, want %s", got, want)
	}
}

func TestBadConfig(t *testing.T) {
	for _, urls := range []map[string]string{
		{"x.test": "ftp://x"},
		{"x.test": "http://"},
		{"x.test": "http://x/prefix"},
		{"x.test": "http://user:pw@x"},
		{"x.test": "http://x?q=1"},
		{"bad_name": "http://x"},
		{"docker.io": "http://a", "index.docker.io": "http://b"},
	} {
		if _, err := New(Config{RegistryURLs: urls}); err == nil {
			t.Errorf("New(%v) succeeded", urls)
		}
	}
}

func TestUnreachableUpstream(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	c := newClient(t, Config{RegistryURLs: map[string]string{testRegistry: "http://" + addr}})
	for _, auth := range []string{"", "Bearer client"} {
		req := blobRequest("GET", content)
		req.Authorization = auth
		_, err := c.Fetch(t.Context(), req)
		if _, isAnswer := oci.AsError(err); !errors.Is(err, oci.ErrUpstreamUnavailable) || isAnswer {
			t.Errorf("Fetch with Authorization %q = %v, want ErrUpstreamUnavailable (502)", auth, err)
		}
		if _, ok := oci.AsError(err); ok {
			t.Errorf("an unreachable upstream is not a registry's answer: %v", err)
		}
	}
	if n := counter(c, testRegistry, "GET", "blob", "error"); n != 1 {
		t.Errorf("UpstreamRequests{blob, error} = %d, want 1 (the forwarded request)", n)
	}
	if n := counter(c, testRegistry, "GET", kindAuth, "error"); n < 1 {
		t.Errorf("UpstreamRequests{auth, error} = %d, want the failed ping counted", n)
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	c := serveRegistry(t, Config{ResponseHeaderTimeout: 50 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	_, err := c.Fetch(t.Context(), blobRequest("GET", content))
	if !errors.Is(err, oci.ErrUpstreamUnavailable) {
		t.Errorf("Fetch = %v, want ErrUpstreamUnavailable", err)
	}
}

func TestCallerCancellationIsNotUnavailability(t *testing.T) {
	arrived := make(chan struct{})
	c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { // stops after the request arrived, cancelling it
		<-arrived
		cancel()
	}()
	_, err := c.Fetch(ctx, blobRequest("GET", content))
	if err == nil || errors.Is(err, oci.ErrUpstreamUnavailable) || ctx.Err() == nil {
		t.Errorf("Fetch = %v, want the caller's cancellation, not ErrUpstreamUnavailable", err)
	}
}

func TestMetricsCountEveryExchange(t *testing.T) {
	c := serveRegistry(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.Write(content)
	})
	for range 3 {
		resp, err := c.Fetch(t.Context(), blobRequest("GET", content))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
	}
	if _, err := c.Fetch(t.Context(), manifestRequest("HEAD", "v1")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, kind string
		want         int
	}{
		{"GET", "blob", 3},
		{"HEAD", "manifest", 1},
		{"GET", kindAuth, 1}, // one ping for the repository's identity
	} {
		if n := counter(c, testRegistry, tt.method, tt.kind, "200"); n != tt.want {
			t.Errorf("UpstreamRequests{%s %s 200} = %d, want %d", tt.method, tt.kind, n, tt.want)
		}
	}
}

// Client has cache.Origin's method set; cache is not imported here (the
// packages do not import each other), so the interface is spelled out.
var _ interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
} = (*Client)(nil)

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConfigTransport(t *testing.T) {
	var mu sync.Mutex // guards urls
	var urls []string
	c := newClient(t, Config{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		urls = append(urls, r.Method+" "+r.URL.String())
		mu.Unlock()
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: r}, nil
	})})
	req := blobRequest("GET", content)
	req.Registry = "ghcr.io"
	if body := fetchAll(t, c, req); body != "ok" {
		t.Errorf("body %q", body)
	}
	want := []string{"GET https://ghcr.io/v2/", "GET https://ghcr.io/v2/team/app/blobs/" + string(oci.FromBytes(content))}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, urls); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	req.Registry = "10.0.0.1"
	if _, err := c.Fetch(t.Context(), req); !errors.Is(err, ErrRefused) {
		t.Errorf("IP literal registry with a custom Transport: %v, want ErrRefused", err)
	}
}
