package registrytest

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Docker Hub's accounting: a manifest GET is a pull, HEAD is not, blobs are
// not; beyond the limit GETs get 429 TOOMANYREQUESTS and are not counted,
// HEAD still answers; Reset opens a new window.
func TestPullLimit(t *testing.T) {
	reg := New(t, Options{Token: true, Redirect: true, PullLimit: 3})
	img := reg.SeedImage(t, "library/app", "v1", 1, 100)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	_, tok := token(t, reg, "", "", "repository:library/app:pull")
	auth := "Bearer " + tok
	client := *reg.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	do := func(method, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, reg.URL()+path, nil)
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && !strings.Contains(string(body), `"code":"TOOMANYREQUESTS"`) {
			t.Errorf("429 body %s", body)
		}
		return resp
	}
	for _, c := range []struct {
		method, path  string
		status        int
		remaining     string
		counted, refd int
	}{
		{"HEAD", "/v2/library/app/manifests/v1", 200, "3;w=21600", 0, 0},
		{"GET", "/v2/library/app/manifests/v1", 200, "2;w=21600", 1, 0},
		{"GET", "/v2/library/app/blobs/" + ld.String(), 307, "", 1, 0},
		{"GET", "/v2/library/app/manifests/v1", 200, "1;w=21600", 2, 0},
		{"GET", "/v2/library/app/manifests/v1", 200, "0;w=21600", 3, 0},
		{"GET", "/v2/library/app/manifests/v1", 429, "0;w=21600", 3, 1},
		{"HEAD", "/v2/library/app/manifests/v1", 200, "0;w=21600", 3, 1},
	} {
		resp := do(c.method, c.path)
		counted, refused := reg.Pulls()
		if resp.StatusCode != c.status || resp.Header.Get("RateLimit-Remaining") != c.remaining || counted != c.counted || refused != c.refd {
			t.Errorf("%s %s: %d remaining %q, pulls %d refused %d; want %d %q, %d %d", c.method, c.path,
				resp.StatusCode, resp.Header.Get("RateLimit-Remaining"), counted, refused, c.status, c.remaining, c.counted, c.refd)
		}
		if c.remaining != "" && resp.Header.Get("RateLimit-Limit") != "3;w=21600" {
			t.Errorf("%s %s: RateLimit-Limit %q", c.method, c.path, resp.Header.Get("RateLimit-Limit"))
		}
	}
	// A request refused for want of a token is no pull.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+"/v2/library/app/manifests/v1", nil)
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if counted, refused := reg.Pulls(); resp.StatusCode != 401 || counted != 3 || refused != 1 {
		t.Errorf("anonymous GET: %d, pulls %d refused %d", resp.StatusCode, counted, refused)
	}
	reg.Reset()
	if resp := do("GET", "/v2/library/app/manifests/v1"); resp.StatusCode != 200 {
		t.Errorf("after Reset: %d", resp.StatusCode)
	}
	if counted, refused := reg.Pulls(); counted != 1 || refused != 0 {
		t.Errorf("after Reset: pulls %d refused %d", counted, refused)
	}
}

func TestUnlimitedPullsAreCounted(t *testing.T) {
	reg := New(t, Options{})
	reg.SeedImage(t, "app", "v1", 1, 10)
	for range 3 {
		resp := get(t, reg, "/v2/app/manifests/v1", "")
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Limit") != "" {
			t.Fatalf("GET: %d, RateLimit-Limit %q", resp.StatusCode, resp.Header.Get("RateLimit-Limit"))
		}
	}
	if counted, refused := reg.Pulls(); counted != 3 || refused != 0 {
		t.Errorf("pulls %d refused %d, want 3 0", counted, refused)
	}
}

// NewServer works without a testing.TB: on a chosen loopback address, seeded
// with PutImage, closed by its owner.
func TestNewServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cdnLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, cdnAddr := ln.Addr().String(), cdnLn.Addr().String()
	ln.Close() // free two ports to ask for
	cdnLn.Close()
	reg, err := NewServer(Options{Token: true, Redirect: true, Addr: addr, CDNAddr: cdnAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	_, port, _ := net.SplitHostPort(addr)
	if reg.Host() != "localhost:"+port {
		t.Errorf("Host %q, want localhost:%s", reg.Host(), port)
	}
	_, cdnPort, _ := net.SplitHostPort(cdnAddr)
	if reg.CDNHost() != "localhost:"+cdnPort {
		t.Errorf("CDNHost %q, want localhost:%s", reg.CDNHost(), cdnPort)
	}
	img, err := randomImageFor("linux/arm64", 2, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.PutImage(t.Context(), "team/app", "v2", img); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref(t, reg, "team/app:v2"), pullOptions(t, reg, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, got)

	for _, c := range []struct {
		name string
		opts Options
	}{
		{"token and basic", Options{Token: true, Basic: true}},
		{"cdn hostname", Options{CDNHostname: "example.com"}},
		{"public addr", Options{Addr: "192.0.2.1:5000"}},
		{"bad addr", Options{Addr: "nonsense"}},
		{"public CDN addr", Options{CDNAddr: "192.0.2.1:5000"}},
	} {
		if r, err := NewServer(c.opts); err == nil {
			r.Close()
			t.Errorf("%s: NewServer accepted %+v", c.name, c.opts)
		}
	}
}
