package containerdtest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// seen is one request a test server received.
type seen struct {
	method, path, ns string
}

// recorder serves h and remembers every request.
type recorder struct {
	h  http.Handler
	mu sync.Mutex // guards reqs
	// reqs are the requests served, in arrival order.
	reqs []seen
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, seen{req.Method, req.URL.Path, req.URL.Query().Get("ns")})
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

// content returns the manifest and blob requests served since the last call.
func (r *recorder) content() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []seen
	for _, s := range r.reqs {
		if strings.Contains(s.path, "/manifests/") || strings.Contains(s.path, "/blobs/") {
			out = append(out, s)
		}
	}
	r.reqs = nil
	return out
}

// newRegistry serves an in-memory registry on loopback, seeded with a
// three-layer image at <host>/harness/app:v1.
func newRegistry(t *testing.T) (rec *recorder, host string, img v1.Image) {
	t.Helper()
	rec = &recorder{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	host = "localhost:" + u.Port()
	img, err = random.Image(64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/harness/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
	rec.content() // forget the seeding
	return rec, host, img
}

// wantDigests are the image's manifest, config and layer digests.
func wantDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{m.String(), c.String()}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// checkContent fails t unless containerd's content store holds every digest.
func checkContent(t *testing.T, c *Containerd, digests []string) {
	t.Helper()
	out, err := c.Ctr(t, "content", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, d := range strings.Fields(out) {
		have[d] = true
	}
	for _, d := range digests {
		if !have[d] {
			t.Errorf("content store lacks %s; it holds:\n%s", d, out)
		}
	}
}

func TestPullDirect(t *testing.T) {
	c := Start(t)
	rec, host, img := newRegistry(t)
	ref := host + "/harness/app:v1"
	if out, err := c.Ctr(t, "images", "pull", "--plain-http", ref); err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, out)
	}
	checkContent(t, c, wantDigests(t, img))
	if got := rec.content(); len(got) == 0 {
		t.Errorf("registry saw no manifest or blob request for a pull of %s", ref)
	}
}

func TestPullThroughMirror(t *testing.T) {
	c := Start(t)
	origin, host, img := newRegistry(t)
	// The mirror serves the same content from another port, so only the
	// recorded requests tell which one containerd used.
	mirror := &recorder{h: origin.h}
	msrv := httptest.NewServer(mirror)
	t.Cleanup(msrv.Close)

	hosts := t.TempDir()
	WriteHostsDir(t, hosts, host, msrv.URL)
	ref := host + "/harness/app:v1"
	if out, err := c.Ctr(t, "images", "pull", "--hosts-dir", hosts, ref); err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, out)
	}
	checkContent(t, c, wantDigests(t, img))

	if got := origin.content(); len(got) != 0 {
		t.Errorf("registry saw %d manifest/blob requests, want all to go to the mirror: %+v", len(got), got)
	}
	got := mirror.content()
	if len(got) == 0 {
		t.Fatalf("mirror saw no manifest or blob request for a pull of %s", ref)
	}
	for _, s := range got {
		if s.ns != host {
			t.Errorf("mirror request %s %s has ns=%q, want %q", s.method, s.path, s.ns, host)
		}
	}
}

func TestStartTwice(t *testing.T) {
	// Two daemons in one test must not share a socket, root or namespace data.
	a, b := Start(t), Start(t)
	if a.Address == b.Address || a.Root == b.Root {
		t.Fatalf("daemons share paths: %s %s / %s %s", a.Address, a.Root, b.Address, b.Root)
	}
	for _, c := range []*Containerd{a, b} {
		if _, err := c.Ctr(t, "namespaces", "ls"); err != nil {
			t.Error(err)
		}
	}
}

// TestV2PullThroughDefaultMirror: containerd 2 pulls in the daemon (its
// transfer service), through a hosts directory whose only file is
// _default/hosts.toml, from a mirror on another port; the registry sees
// nothing.
func TestV2PullThroughDefaultMirror(t *testing.T) {
	c := StartWith(t, Config{Bin: V2Bin(t)})
	if c.Major != 2 {
		t.Fatalf("containerd in %s is %d.x, want 2.x", V2Bin(t), c.Major)
	}
	origin, host, img := newRegistry(t)
	mirror := &recorder{h: origin.h}
	msrv := httptest.NewServer(mirror)
	t.Cleanup(msrv.Close)
	hosts := t.TempDir()
	WriteDefaultHostsDir(t, hosts, msrv.URL)
	ref := host + "/harness/app:v1"
	if out, err := c.Ctr(t, "images", "pull", "--hosts-dir", hosts, ref); err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, out)
	}
	checkContent(t, c, wantDigests(t, img))
	if got := origin.content(); len(got) != 0 {
		t.Errorf("registry saw %d manifest/blob requests, want all to go to the mirror: %+v", len(got), got)
	}
	if got := mirror.content(); len(got) == 0 {
		t.Errorf("mirror saw no manifest or blob request for a pull of %s", ref)
	}
}
