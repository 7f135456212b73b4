//go:build linux

package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// do sends one request to the registry, bounded by 30 seconds and t's
// context, and returns its response with the body read and closed. It
// fails t when there is no response.
func (d *distribution) do(t *testing.T, method, target, contentType string, body []byte) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Close = true // nothing left open when the registry stops
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("e2e: distribution registry: %v", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("e2e: distribution registry: %s %s: %v", method, target, err)
	}
	return resp
}

// push stores img in the registry under repo by digest only, the way any
// client pushes (OCI distribution spec): each blob as a monolithic upload
// (POST, then PUT ?digest=), then the manifest. The registry has no tag
// for it: an alternate serves content by digest. It returns once the
// access log shows every request of the push, so that what it logs next is
// another client's.
func (d *distribution) push(t *testing.T, repo string, img v1.Image) {
	t.Helper()
	mark := d.access.mark()
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	blobs := [][]byte{config}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	for _, b := range blobs {
		d.pushBlob(t, repo, b)
	}
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	resp := d.do(t, http.MethodPut, d.url()+"/v2/"+repo+"/manifests/"+digest.String(), string(mt), manifest)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != digest.String() {
		t.Fatalf("e2e: push manifest %s to %s: %s, digest %q", digest, repo, resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
	// The registry logs a request after answering it: the last lines may
	// come after the push's answers. Two requests a blob, one manifest.
	if want := 2*len(blobs) + 1; !d.access.waitFor(10*time.Second, func() bool { return len(d.requests(mark)) >= want }) {
		t.Fatalf("e2e: the distribution registry logged %d requests of a push, want %d", len(d.requests(mark)), want)
	}
}

// pushBlob uploads one blob to repo.
func (d *distribution) pushBlob(t *testing.T, repo string, b []byte) {
	t.Helper()
	digest, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp := d.do(t, http.MethodPost, d.url()+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("e2e: start an upload to %s: %s", repo, resp.Status)
	}
	// The Location may be relative, and carries a query of its own.
	loc, err := url.Parse(d.url() + "/")
	if err == nil {
		loc, err = loc.Parse(resp.Header.Get("Location"))
	}
	if err != nil {
		t.Fatalf("e2e: upload location %q: %v", resp.Header.Get("Location"), err)
	}
	q := loc.Query()
	q.Set("digest", digest.String())
	loc.RawQuery = q.Encode()
	resp = d.do(t, http.MethodPut, loc.String(), "application/octet-stream", b)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("e2e: upload %s to %s: %s", digest, repo, resp.Status)
	}
}

// served is one request in the registry's access log.
type served struct {
	method, path string // the path without its query
	status       int
	bytes        int64 // of the body sent
}

// accessRE reads the request line, status and body size of a Combined Log
// Format line ("-" for no body).
var accessRE = regexp.MustCompile(`"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-) `)

// requests returns the requests the registry logged after mark (its access
// log's line count then).
func (d *distribution) requests(mark int) []served {
	var out []served
	for _, l := range d.access.linesSince(mark) {
		m := accessRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		status, _ := strconv.Atoi(m[3])
		size, _ := strconv.ParseInt(m[4], 10, 64) // "-" is 0
		path, _, _ := strings.Cut(m[2], "?")
		out = append(out, served{method: m[1], path: path, status: status, bytes: size})
	}
	return out
}
