package puller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/oci"
)

// ErrRange is wrapped by the error of a ranged read whose answer is not
// the part asked for: a 200 with the whole blob for a part of it, another
// Content-Range, or a body of another length.
var ErrRange = errors.New("answer does not match the range asked for")

// BlobRange reads n bytes of blob desc from offset off with one
// "Range: bytes=off-(off+n-1)" request, the way a lazy-pulling snapshotter
// (eStargz, SOCI, Nydus) reads a table of contents or a file's chunk
// instead of the whole layer. The window must lie within desc.Size.
//
// The answer must be 206 with that window's Content-Range, or 200 when the
// window is the whole blob. Like the registry's own Range answer, the
// bytes are not checked against the blob's digest (a lazy client checks
// its chunks against its table of contents), and a broken read is not
// resumed. Progress hears of the bytes; Observe does not, as it hears of
// whole fetches.
func (p *Puller) BlobRange(ctx context.Context, repo string, desc v1.Descriptor, off, n int64) ([]byte, error) {
	if off < 0 || n < 1 || off+n > desc.Size {
		return nil, fmt.Errorf("blob %s: window %d+%d is not within its %d bytes", desc.Digest, off, n, desc.Size)
	}
	return p.window(ctx, repo, desc, fmt.Sprintf("bytes=%d-%d", off, off+n-1), off, n)
}

// BlobSuffix reads the last n bytes of blob desc, all of it when it is
// shorter, with one "Range: bytes=-n" request: how a lazy-pulling
// snapshotter reads a layer's footer first, to find its table of contents.
// It answers as BlobRange does.
func (p *Puller) BlobSuffix(ctx context.Context, repo string, desc v1.Descriptor, n int64) ([]byte, error) {
	if n < 1 || desc.Size < 1 {
		return nil, fmt.Errorf("blob %s: suffix of %d of its %d bytes", desc.Digest, n, desc.Size)
	}
	n = min(n, desc.Size)
	return p.window(ctx, repo, desc, fmt.Sprintf("bytes=-%d", n), desc.Size-n, n)
}

// window sends rng for blob desc and returns the n bytes from off that it
// must be answered with.
func (p *Puller) window(ctx context.Context, repo string, desc v1.Descriptor, rng string, off, n int64) ([]byte, error) {
	d, err := oci.ParseDigest(desc.Digest.String())
	if err != nil {
		return nil, err
	}
	resp, err := p.do(ctx, http.MethodGet, repo, KindBlob, string(d), rng)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch whole := off == 0 && n == desc.Size; {
	case resp.StatusCode == http.StatusOK && !whole:
		return nil, fmt.Errorf("blob %s: %s answered 200: %w", d.Short(), rng, ErrRange)
	case resp.StatusCode == http.StatusPartialContent:
		// The total may be "*" (unknown), but the window must be the one
		// asked for.
		want := fmt.Sprintf("bytes %d-%d/", off, off+n-1)
		if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, want) {
			return nil, fmt.Errorf("blob %s: %s answered Content-Range %q: %w", d.Short(), rng, cr, ErrRange)
		}
	}
	// One byte more than the window shows a body that is too long, and
	// bounds what a server sending without end costs.
	f := Fetch{Kind: KindBlob, Digest: d, Start: time.Now()}
	b := make([]byte, n+1)
	got, err := io.ReadFull(&observedReader{r: resp.Body, p: p, f: &f}, b)
	switch {
	case int64(got) > n:
		return nil, fmt.Errorf("blob %s: %s answered more than %d bytes: %w", d.Short(), rng, n, ErrRange)
	case int64(got) < n && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("blob %s: %s answered %d of %d bytes: %w", d.Short(), rng, got, n, ErrRange)
	case int64(got) < n:
		return nil, fmt.Errorf("blob %s: %s: after %d bytes: %w", d.Short(), rng, got, err)
	}
	return b[:n], nil
}
