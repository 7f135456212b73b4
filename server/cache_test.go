package server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// The server over the real cache, end to end: what each source looks like
// to a client, and the fill's guarantees as a client sees them.

// TestThroughCache: a cold GET streams the fill, a warm GET is a disk hit
// sent with sendfile, Range and HEAD work on both, and manifests keep their
// media type, by digest and by tag; upstream sees each object once.
func TestThroughCache(t *testing.T) {
	o := origintest.New()
	blob := origintest.RandomBytes(t, 2<<20+7)
	blobDigest := o.Add(blob, "")
	manifest := []byte(`{"schemaVersion":2,"mediaType":"` + manifestType + `"}`)
	manifestDigest := o.Add(manifest, manifestType)
	o.Tag("v1", manifestDigest)

	// No memory tier: hits come from disk.
	c := newTestCache(t, o, func(cfg *cache.Config) { cfg.MemoryBytes = 0 })
	var spy *spyListener
	ts := startTCP(t, Config{}, c, func(ln net.Listener) net.Listener {
		spy = &spyListener{Listener: ln}
		return spy
	})
	blobPath := "/v2/app/blobs/" + string(blobDigest) + "?ns=registry.example.test"
	steps := []struct {
		name       string
		method     string
		target     string
		rng        string
		wantStatus int
		wantBody   []byte
		wantType   string
		wantSource string
	}{
		{"cold blob streams the fill", "GET", blobPath, "", 200, blob, oci.BlobMediaType, "fill"},
		{"warm blob from disk", "GET", blobPath, "", 200, blob, oci.BlobMediaType, "disk"},
		{"range of a disk hit", "GET", blobPath, "bytes=1048576-", 206, blob[1<<20:], oci.BlobMediaType, "disk"},
		{"head of a disk hit", "HEAD", blobPath, "", 200, nil, oci.BlobMediaType, "disk"},
		{"manifest by tag", "GET", "/v2/app/manifests/v1?ns=registry.example.test", "", 200, manifest, manifestType, "fill"},
		{"manifest by digest", "GET", "/v2/app/manifests/" + string(manifestDigest) + "?ns=registry.example.test", "", 200, manifest, manifestType, "disk"},
		{"head manifest by tag", "HEAD", "/v2/app/manifests/v1?ns=registry.example.test", "", 200, nil, manifestType, "upstream"},
	}
	for i, st := range steps {
		h := http.Header{}
		if st.rng != "" {
			h.Set("Range", st.rng)
		}
		resp, body, err := ts.do(t, st.method, st.target, h)
		if err != nil || resp.StatusCode != st.wantStatus || !bytes.Equal(body, st.wantBody) {
			t.Fatalf("%s: %v, status %d, %d bytes; want %d, %d bytes", st.name, err, resp.StatusCode, len(body), st.wantStatus, len(st.wantBody))
		}
		if got := resp.Header.Get("Content-Type"); got != st.wantType {
			t.Errorf("%s: Content-Type %q, want %q", st.name, got, st.wantType)
		}
		if st.method == "HEAD" && resp.ContentLength <= 0 {
			t.Errorf("%s: Content-Length %d", st.name, resp.ContentLength)
		}
		if line := ts.logs.wait(t, i+1)[i]; line["source"] != st.wantSource {
			t.Errorf("%s: source %v, want %s", st.name, line["source"], st.wantSource)
		}
	}
	// Every body goes out with sendfile: the cold blob and the
	// manifest's fill from their pending files as they grow, the warm blob
	// and the Range of the disk hit from the committed file.
	want := int64(2*len(blob) + len(blob[1<<20:]) + len(manifest))
	if fileBytes, _ := spy.counts(); fileBytes != want {
		t.Errorf("%d bytes sent from a file by ReadFrom, want %d: the fill's, the warm blob's, its window's, the manifest's", fileBytes, want)
	}
	if b, m := o.Count("GET", oci.KindBlob, string(blobDigest)), o.Count("GET", oci.KindManifest, string(manifestDigest)); b != 1 || m != 1 {
		t.Errorf("origin saw %d GETs of the blob and %d of the manifest, want 1 each", b, m)
	}
	c.closeReleased(t)
}

// TestCorruptFillBreaksResponse: content whose digest turns out wrong is
// never delivered whole: the client's read fails.
func TestCorruptFillBreaksResponse(t *testing.T) {
	o := origintest.New()
	blob := origintest.RandomBytes(t, 1<<20)
	dg := o.Add(blob, "")
	c := newTestCache(t, origintest.Corrupt(o), nil)
	ts := startServer(t, Config{}, c)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://x/v2/app/blobs/"+string(dg), nil)
	resp, err := ts.client.Do(req)
	if err == nil {
		// Headers went out before the fill failed: the body must break.
		defer resp.Body.Close()
		body, rerr := io.ReadAll(resp.Body)
		if rerr == nil || len(body) >= len(blob) {
			t.Fatalf("corrupt fill delivered %d of %d bytes, read error %v", len(body), len(blob), rerr)
		}
	}
	// Else the fill failed before the first byte was flushed, and the
	// connection closed before even the headers: as broken as it gets.
	line := ts.logs.wait(t, 1)[0]
	if line["err"] == nil {
		t.Errorf("access line without err: %v", line)
	}
	c.closeReleased(t)
}

// TestRefusalPassesThroughCache: upstream's 401 reaches the client through
// a real cache with challenge and body.
func TestRefusalPassesThroughCache(t *testing.T) {
	o := origintest.New()
	body := []byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`)
	refused := origintest.Fail(o, &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Challenge: challenge, Body: body, ContentType: "application/json"})
	ts := startServer(t, Config{}, newTestCache(t, refused, nil))
	resp, got, err := ts.do(t, "GET", "/v2/org/private/blobs/"+string(digestA)+"?ns=registry.example.test", nil)
	if err != nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != challenge || !bytes.Equal(got, body) {
		t.Errorf("got %v %d %q %q", err, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), got)
	}
}

// TestBurstIsOneUpstreamFetch: clients that ask for the same cold blob at
// once all stream the one fill: upstream sees one GET, every client gets
// every byte, and the fill's readers all end.
func TestBurstIsOneUpstreamFetch(t *testing.T) {
	const clients = 16
	const size = 1 << 20
	c, dg, gate := gatedBlob(t, size)
	ts := startServer(t, Config{}, c)
	ts.client.Transport.(*http.Transport).MaxIdleConnsPerHost = clients

	resps := make([]*http.Response, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		// Ends when the response headers arrive, which the fill sends as
		// soon as it knows the size, before the gate.
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://x/v2/app/blobs/"+string(dg), nil)
			resps[i], errs[i] = ts.client.Do(req)
		}()
	}
	wg.Wait() // every client is now reading the fill
	close(gate)
	want := testData(size)
	for i, resp := range resps {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, want) {
			t.Errorf("client %d: %d bytes, %v", i, len(body), err)
		}
	}
	if n := c.origin.Count("GET", oci.KindBlob, string(dg)); n != 1 {
		t.Errorf("upstream saw %d GETs for %d clients, want 1", n, clients)
	}
	sources := map[any]int{}
	for _, line := range ts.logs.wait(t, clients) {
		sources[line["source"]]++
	}
	if sources["fill"] != 1 || sources["joined"] != clients-1 {
		t.Errorf("sources %v, want one fill and %d joined", sources, clients-1)
	}
	c.closeReleased(t)
}
