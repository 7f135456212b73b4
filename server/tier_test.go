package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// origin is an in-memory registry for a real tier.Cache.
type origin struct {
	mu      sync.Mutex // guards everything below
	objects map[oci.Digest][]byte
	types   map[oci.Digest]string
	tags    map[string]oci.Digest
	gets    int
	corrupt bool // flip a byte of every body
	// gate, when set, holds every body after its first half until closed.
	gate   chan struct{}
	refuse *oci.Error // answer every request with this
}

func newOrigin() *origin {
	return &origin{objects: map[oci.Digest][]byte{}, types: map[oci.Digest]string{}, tags: map[string]oci.Digest{}}
}

func (o *origin) add(data []byte, mediaType string) oci.Digest {
	dg := oci.FromBytes(data)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.objects[dg], o.types[dg] = data, mediaType
	return dg
}

func (o *origin) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refuse != nil {
		return nil, o.refuse
	}
	dg := req.Reference.Digest
	if !req.Reference.IsDigest() {
		dg = o.tags[req.Reference.Tag]
	}
	data, ok := o.objects[dg]
	if !ok {
		return nil, oci.ErrManifestUnknown(req.Reference.String())
	}
	resp := &oci.Response{Digest: dg, MediaType: o.types[dg], Size: int64(len(data))}
	if req.Method == http.MethodGet {
		o.gets++
		body := data
		if o.corrupt {
			body = bytes.Clone(data)
			body[len(body)/2] ^= 0xff
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if gate := o.gate; gate != nil {
			half := len(body) / 2
			resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body[:half]),
				readerFunc(func([]byte) (int, error) { <-gate; return 0, io.EOF }),
				bytes.NewReader(body[half:])))
		}
	}
	return resp, nil
}

func newTierCache(t *testing.T, o *origin) *tier.Cache {
	t.Helper()
	// No memory tier: hits come from disk.
	c, err := tier.New(tier.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestThroughTier serves a real tier.Cache: a cold GET streams the fill, a
// warm GET is a disk hit sent with sendfile, Range and HEAD work on both,
// and manifests keep their media type, by digest and by tag.
func TestThroughTier(t *testing.T) {
	o := newOrigin()
	blob := make([]byte, 2<<20+7)
	rand.Read(blob)
	blobDigest := o.add(blob, "")
	const manifestType = "application/vnd.oci.image.manifest.v1+json"
	manifest := []byte(`{"schemaVersion":2,"mediaType":"` + manifestType + `"}`)
	manifestDigest := o.add(manifest, manifestType)
	o.tags["v1"] = manifestDigest

	var spy *spyListener
	ts := startTCP(t, Config{}, tierAnswer(newTierCache(t, o)), func(ln net.Listener) net.Listener {
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
	// The warm blob and the Range of the disk hit both go out with sendfile.
	if fileBytes, _ := spy.counts(); fileBytes != int64(len(blob)+len(blob[1<<20:])) {
		t.Errorf("%d bytes sent from a file by ReadFrom, want the warm blob's %d and its window's %d", fileBytes, len(blob), len(blob[1<<20:]))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gets != 2 {
		t.Errorf("origin saw %d GETs, want 2 (one blob, one manifest)", o.gets)
	}
}

// TestCorruptFillBreaksResponse: content whose digest turns out wrong is
// never delivered whole: the client's read fails.
func TestCorruptFillBreaksResponse(t *testing.T) {
	o := newOrigin()
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	dg := o.add(blob, "")
	o.corrupt = true
	ts := startServer(t, Config{}, tierAnswer(newTierCache(t, o)))
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
}

// TestTierRefusalPassesThrough: upstream's 401 reaches the client through a
// real cache with challenge and body.
func TestTierRefusalPassesThrough(t *testing.T) {
	o := newOrigin()
	body := []byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`)
	o.refuse = &oci.Error{Status: 401, Code: oci.CodeUnauthorized, Challenge: challenge, Body: body, ContentType: "application/json"}
	ts := startServer(t, Config{}, tierAnswer(newTierCache(t, o)))
	resp, got, err := ts.do(t, "GET", "/v2/org/private/blobs/"+string(digestA)+"?ns=registry.example.test", nil)
	if err != nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != challenge || !bytes.Equal(got, body) {
		t.Errorf("got %v %d %q %q", err, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), got)
	}
}

// TestBurstIsOneUpstreamFetch: clients that ask for the same cold blob at
// once all stream the one fill: upstream sees one GET, every client gets
// every byte.
func TestBurstIsOneUpstreamFetch(t *testing.T) {
	const clients = 16
	o := newOrigin()
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	dg := o.add(blob, "")
	o.gate = make(chan struct{})
	ts := startServer(t, Config{}, tierAnswer(newTierCache(t, o)))
	ts.client.Transport.(*http.Transport).MaxIdleConnsPerHost = clients

	resps := make([]*http.Response, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		// Ends when the response headers arrive: the first half of the
		// blob is written before the gate, so they are flushed.
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://x/v2/app/blobs/"+string(dg), nil)
			resps[i], errs[i] = ts.client.Do(req)
		}()
	}
	wg.Wait() // every client is now reading the fill
	close(o.gate)
	for i, resp := range resps {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, blob) {
			t.Errorf("client %d: %d bytes, %v", i, len(body), err)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gets != 1 {
		t.Errorf("upstream saw %d GETs for %d clients, want 1", o.gets, clients)
	}
}
