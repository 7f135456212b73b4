package server

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/oci"
)

// part is one part of a multipart/byteranges body, as a client sees it.
type part struct {
	contentRange, contentType string
	body                      string
}

// readParts parses a multipart/byteranges answer.
func readParts(t *testing.T, contentType string, body []byte) []part {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", contentType, err)
	}
	var out []part
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, part{p.Header.Get("Content-Range"), p.Header.Get("Content-Type"), string(b)})
	}
}

// TestMultipleRangesAsServeContent: several ranges are answered 206
// multipart/byteranges with the parts net/http's ServeContent gives for the
// same bytes and Range, from memory, disk and a fill alike; content that
// reads only in order (an uncached stream) is answered whole.
func TestMultipleRangesAsServeContent(t *testing.T) {
	data := testData(10000)
	dg := oci.FromBytes(data)
	reference := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", oci.BlobMediaType)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(reference.Close)
	for _, rng := range []string{"bytes=0-9,100-199", "bytes=9000-,-10,500-500", "bytes=20000-,0-0"} {
		req, _ := http.NewRequest(http.MethodGet, reference.URL, nil)
		req.Header.Set("Range", rng)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, src := range sources {
			t.Run(src.name+" "+rng, func(t *testing.T) {
				c := src.serve(t, data, "")
				ts := startServer(t, Config{}, c)
				h := http.Header{}
				h.Set("Range", rng)
				got, body, err := ts.do(t, http.MethodGet, "/v2/app/blobs/"+string(dg), h)
				if err != nil {
					t.Fatal(err)
				}
				ts.logs.wait(t, 1)
				c.released(t)
				if got.ContentLength != int64(len(body)) {
					t.Errorf("Content-Length %d for a body of %d", got.ContentLength, len(body))
				}
				multi := strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/")
				if src.source == cache.SourceUncached && multi {
					if got.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
						t.Errorf("uncached: %d, %d bytes; want the whole object", got.StatusCode, len(body))
					}
					return
				}
				if !multi {
					// One satisfiable range: the reference answers a single 206.
					if got.StatusCode != resp.StatusCode || got.Header.Get("Content-Range") != resp.Header.Get("Content-Range") || !bytes.Equal(body, want) {
						t.Errorf("%d %q %q, want %d %q %q", got.StatusCode, got.Header.Get("Content-Range"), body, resp.StatusCode, resp.Header.Get("Content-Range"), want)
					}
					return
				}
				wantParts := readParts(t, resp.Header.Get("Content-Type"), want)
				if got.StatusCode != http.StatusPartialContent {
					t.Fatalf("status %d, want 206", got.StatusCode)
				}
				gotParts := readParts(t, got.Header.Get("Content-Type"), body)
				if len(gotParts) != len(wantParts) {
					t.Fatalf("%d parts, want %d", len(gotParts), len(wantParts))
				}
				for i := range wantParts {
					if gotParts[i] != wantParts[i] {
						t.Errorf("part %d: %q %q %d bytes, want %q %q %d bytes", i, gotParts[i].contentRange, gotParts[i].contentType, len(gotParts[i].body),
							wantParts[i].contentRange, wantParts[i].contentType, len(wantParts[i].body))
					}
				}
			})
		}
	}
}
