package puller

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/cacheyd/cacheyd/oci"
)

// Puller pulls images from one cacheyd or registry. Its fields must not
// change once a pull has started; one Puller may run several pulls at once.
type Puller struct {
	// Client sends the requests; nil means http.DefaultClient. Redirects
	// are followed by the Puller itself (its copy of Client follows none),
	// so that Authorization goes only to the host that asked for it.
	Client *http.Client
	// Base is the cacheyd's or the registry's URL, such as
	// http://127.0.0.1:30123.
	Base string
	// Namespace is the registry a cacheyd is asked for, sent as ?ns= the
	// way containerd asks a mirror; empty sends none (a registry itself,
	// or a cacheyd's default registry).
	Namespace string
	// Platforms chooses the manifests of an index: those whose platform
	// satisfies one of these ("linux/arm64" satisfies linux/arm64/v8 too).
	// Empty means every platform. Attestation manifests are never pulled,
	// and an image manifest is pulled whatever this says.
	Platforms []v1.Platform
	// Tokens makes a 401 with a Bearer challenge be answered the anonymous
	// way, as containerd does: a token from the challenge's realm, kept
	// for the repository, and the request sent once more. The realm is
	// another host; without Tokens a 401 is a StatusError, as a caller
	// that must talk to Base alone wants.
	Tokens bool
	// Parallel is how many blobs Pull downloads at once; zero means 3, as
	// containerd's default max_concurrent_downloads.
	Parallel int
	// Known, when set, is asked by Pull before each config and layer
	// download, and blobs it reports are skipped, as containerd skips
	// content its store already holds. Nil fetches every blob.
	Known func(oci.Digest) bool
	// Resume is how many times one blob download that breaks off is
	// continued with "Range: bytes=N-" from the byte it reached, the way
	// containerd resumes an interrupted ingest. Zero means a broken
	// download fails.
	Resume int
	// Progress, when set, is told the kind and size of every piece of
	// body that arrives for a manifest or blob fetched by digest. It is
	// called from the downloading goroutines concurrently.
	Progress func(k Kind, n int64)
	// Observe, when set, is told about every manifest and blob fetch by
	// digest when it ends, successful or not. It is called from the
	// downloading goroutines concurrently.
	Observe func(Fetch)

	mu     sync.Mutex        // guards tokens
	tokens map[string]string // Bearer token by repository, from answered challenges
}

// Kind is what a fetch is for, named as in the API's paths.
type Kind string

// The kinds of fetch.
const (
	KindManifest Kind = "manifests"
	KindBlob     Kind = "blobs"
)

// noun is the kind in messages: "manifest", "blob".
func (k Kind) noun() string { return strings.TrimSuffix(string(k), "s") }

// Fetch describes one manifest or blob fetched by digest.
type Fetch struct {
	Kind   Kind
	Digest oci.Digest
	// Start is when the first request for it was sent.
	Start time.Time
	// FirstByte is when its first body byte arrived; zero if none did.
	FirstByte time.Time
	// End is when it was verified, or failed.
	End time.Time
	// Bytes counts the body bytes received, over every attempt.
	Bytes int64
	// Resumes counts the Range requests that continued it.
	Resumes int
	// Err is why it failed; nil when it was verified.
	Err error
}

// Result is what one pull fetched.
type Result struct {
	// Bytes is the body bytes received and verified.
	Bytes int64
	// Blobs lists every digest fetched (manifests, configs, layers), but
	// not those Known said were there already: the manifests first, in
	// the order read, then the blobs as they were verified.
	Blobs []oci.Digest
}

// defaultParallel is Parallel's zero value: containerd's default.
const defaultParallel = 3

// Pull fetches repo at ref (a tag or a digest) as a node does: the
// manifests (see Image), then every config and layer of the chosen
// platforms, Parallel at a time, each verified. On error the Result holds
// what was fetched before it.
func (p *Puller) Pull(ctx context.Context, repo, ref string) (*Result, error) {
	res := &Result{}
	img, err := p.Image(ctx, repo, ref)
	if img != nil {
		for _, m := range img.Manifests {
			res.add(m.Digest, int64(len(m.Raw)))
		}
	}
	if err != nil {
		return res, err
	}
	var mu sync.Mutex // guards res while the blobs download
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(defaultParallel)
	if p.Parallel > 0 {
		g.SetLimit(p.Parallel)
	}
	for _, b := range img.Blobs {
		d := oci.Digest(b.Digest.String()) // Image has checked it parses
		if p.Known != nil && p.Known(d) {
			continue
		}
		// Returns once the blob is verified, or failed, or gctx ended.
		g.Go(func() error {
			n, err := p.Blob(gctx, repo, b)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			res.add(d, n)
			return nil
		})
	}
	return res, g.Wait()
}

func (r *Result) add(d oci.Digest, n int64) {
	r.Bytes += n
	r.Blobs = append(r.Blobs, d)
}

func (p *Puller) observe(f *Fetch, err error) {
	if p.Observe != nil {
		f.End, f.Err = time.Now(), err
		p.Observe(*f)
	}
}
