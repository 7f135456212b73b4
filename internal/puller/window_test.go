package puller

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// seedWindowBlob stores 100 KiB of random bytes in repository "app".
func seedWindowBlob(t *testing.T, up *registrytest.Registry) ([]byte, v1.Descriptor) {
	t.Helper()
	content := make([]byte, 100<<10)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	h := up.SeedBlob(t, "app", content)
	return content, v1.Descriptor{Digest: h, Size: int64(len(content))}
}

// Ranged reads send the one Range asked for, through the token challenge
// and the redirect, and return exactly the window's bytes.
func TestBlobWindows(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	content, desc := seedWindowBlob(t, up)
	var progress int64
	p := &Puller{Client: up.Client(), Base: up.URL(), Tokens: true, Progress: func(_ Kind, n int64) { progress += n }}
	size := desc.Size
	for _, c := range []struct {
		name      string
		read      func() ([]byte, error)
		wantRange string
		want      []byte
	}{
		{"suffix", func() ([]byte, error) { return p.BlobSuffix(t.Context(), "app", desc, 4096) }, "bytes=-4096", content[size-4096:]},
		{"suffix over the size", func() ([]byte, error) { return p.BlobSuffix(t.Context(), "app", desc, 1<<20) }, "bytes=-102400", content},
		{"window", func() ([]byte, error) { return p.BlobRange(t.Context(), "app", desc, 1000, 2000) }, "bytes=1000-2999", content[1000:3000]},
		{"last byte", func() ([]byte, error) { return p.BlobRange(t.Context(), "app", desc, size-1, 1) }, "bytes=102399-102399", content[size-1:]},
	} {
		t.Run(c.name, func(t *testing.T) {
			up.Reset()
			progress = 0
			got, err := c.read()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Errorf("got %d bytes, want %d: not the window", len(got), len(c.want))
			}
			if progress != int64(len(c.want)) {
				t.Errorf("progress %d bytes, want %d", progress, len(c.want))
			}
			// The registry (a 401 the first time, then the redirect) and
			// the CDN each get the one Range.
			var cdn int
			for _, q := range up.Requests() {
				if q.Kind != registrytest.KindCDN && q.Kind != registrytest.KindBlob {
					continue
				}
				if q.Range != c.wantRange {
					t.Errorf("%s %s with Range %q, want %q", q.Host, q.Kind, q.Range, c.wantRange)
				}
				if q.Kind == registrytest.KindCDN {
					cdn++
				}
			}
			if cdn != 1 {
				t.Errorf("%d reads on the CDN, want 1", cdn)
			}
		})
	}
	for _, bad := range [][2]int64{{-1, 10}, {0, 0}, {size - 10, 11}} {
		if _, err := p.BlobRange(t.Context(), "app", desc, bad[0], bad[1]); err == nil {
			t.Errorf("BlobRange(%d, %d) of %d bytes: no error", bad[0], bad[1], size)
		}
	}
}

// An answer that is not the window asked for is ErrRange: a 200 with the
// whole blob (a server that ignores Range), unless the window is the whole
// blob, and a 206 of another window.
func TestBlobWindowWrongAnswer(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	content, desc := seedWindowBlob(t, up)
	p := &Puller{Client: up.Client(), Base: up.URL()}

	up.SetHook(func(_ http.ResponseWriter, req *http.Request) bool {
		req.Header.Del("Range")
		return false
	})
	if _, err := p.BlobSuffix(t.Context(), "app", desc, 4096); !errors.Is(err, ErrRange) {
		t.Errorf("suffix answered 200: %v, want ErrRange", err)
	}
	got, err := p.BlobRange(t.Context(), "app", desc, 0, desc.Size)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("whole blob as a window answered 200: %d bytes, %v; want the blob", len(got), err)
	}

	up.SetHook(func(_ http.ResponseWriter, req *http.Request) bool {
		req.Header.Set("Range", "bytes=0-99")
		return false
	})
	if _, err := p.BlobRange(t.Context(), "app", desc, 100, 100); !errors.Is(err, ErrRange) {
		t.Errorf("another window answered: %v, want ErrRange", err)
	}
}
