package puller

import (
	"context"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/oci"
)

// Blob GETs blob desc of repo and streams it to its end through its hash,
// holding none of it, resuming a broken download with Range up to
// p.Resume times. It returns the bytes read once the digest and the size
// (desc.Size) are checked.
func (p *Puller) Blob(ctx context.Context, repo string, desc v1.Descriptor) (int64, error) {
	return p.blob(ctx, repo, desc, true)
}

// BlobUnverified is Blob checking only the size, not the digest: for
// measuring a server, where hashing every byte would measure the client.
// Content read this way is not known to be the blob.
func (p *Puller) BlobUnverified(ctx context.Context, repo string, desc v1.Descriptor) (int64, error) {
	return p.blob(ctx, repo, desc, false)
}

func (p *Puller) blob(ctx context.Context, repo string, desc v1.Descriptor, verify bool) (int64, error) {
	d, err := oci.ParseDigest(desc.Digest.String())
	if err != nil {
		return 0, err
	}
	f := Fetch{Kind: KindBlob, Digest: d, Start: time.Now()}
	n, err := p.readBlob(ctx, repo, &f, desc.Size, verify)
	p.observe(&f, err)
	return n, err
}

func (p *Puller) readBlob(ctx context.Context, repo string, f *Fetch, size int64, verify bool) (int64, error) {
	var h hash.Hash
	if verify {
		h = f.Digest.NewHash()
	}
	var got int64 // bytes read so far, the offset to resume from
	for {
		rng := ""
		if got > 0 {
			rng = fmt.Sprintf("bytes=%d-", got)
		}
		n, restarted, inBody, err := p.readBlobFrom(ctx, repo, f, h, rng, got, size)
		if restarted {
			got = 0
		}
		got += n
		if err == nil {
			break
		}
		if f.Resumes >= p.Resume || ctx.Err() != nil {
			if !inBody { // a refusal or a failed request says which blob itself
				return got, err
			}
			return got, fmt.Errorf("blob %s: after %d bytes: %w", f.Digest.Short(), got, err)
		}
		f.Resumes++
	}
	if verify && !f.Digest.Matches(h) {
		return got, fmt.Errorf("blob %s: %w", f.Digest.Short(), ErrDigestMismatch)
	}
	if got != size {
		return got, fmt.Errorf("blob %s: %d bytes, its descriptor says %d", f.Digest.Short(), got, size)
	}
	return got, nil
}

// readBlobFrom sends one GET of the blob (with Range rng when not empty)
// and hashes its body into h (when not nil), reading at most one byte
// more than the blob's size has left from offset from. A server that
// ignores the Range and answers 200 restarts the hash: restarted reports
// that. inBody reports that err, if any, came from reading the body.
func (p *Puller) readBlobFrom(ctx context.Context, repo string, f *Fetch, h hash.Hash, rng string, from, size int64) (n int64, restarted, inBody bool, err error) {
	resp, err := p.do(ctx, http.MethodGet, repo, KindBlob, string(f.Digest), rng)
	if err != nil {
		return 0, false, false, err
	}
	defer resp.Body.Close()
	if rng != "" {
		switch resp.StatusCode {
		case http.StatusOK:
			if h != nil {
				h.Reset()
			}
			restarted, from = true, 0
		case http.StatusPartialContent:
			if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-", from)) {
				return 0, false, true, fmt.Errorf("asked for %s, got Content-Range %q", rng, cr)
			}
		}
	}
	var w io.Writer = io.Discard
	if h != nil {
		w = h
	}
	// Beyond the size, the body is wrong whatever it holds: a byte more
	// shows that, and a server sending without end is not read forever.
	body := io.LimitReader(&observedReader{r: resp.Body, p: p, f: f}, max(size-from, 0)+1)
	n, err = io.Copy(w, body)
	return n, restarted, true, err
}

// observedReader notes the first byte and the bytes of a fetch's body.
type observedReader struct {
	r io.Reader
	p *Puller
	f *Fetch
}

func (o *observedReader) Read(b []byte) (int, error) {
	n, err := o.r.Read(b)
	if n > 0 {
		if o.f.FirstByte.IsZero() {
			o.f.FirstByte = time.Now()
		}
		o.f.Bytes += int64(n)
		if o.p.Progress != nil {
			o.p.Progress(o.f.Kind, int64(n))
		}
	}
	return n, err
}
