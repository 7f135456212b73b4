package warm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/cacheyd/cacheyd/oci"
)

// Config says where to warm and what to pull.
type Config struct {
	// Target is cacheyd's base URL, such as http://127.0.0.1:30123.
	// Required.
	Target string
	// Platforms are the platforms to pull from a multi-platform image
	// ("linux/amd64", "linux/arm64/v8"); a platform without a variant
	// matches every variant. Empty means every platform. Attestation
	// manifests (platform unknown/unknown), which nodes never pull, are
	// always skipped. A single-platform image is pulled whatever this says.
	Platforms []v1.Platform
	// Parallel is how many requests run at once. Zero means 4.
	Parallel int
	// Client sends the requests. Nil means a client with connect and
	// response-header timeouts and no overall timeout (layers can be big).
	Client *http.Client
	// OnStart, if set, is called once every manifest is read, with the
	// number of distinct blobs about to be fetched and their total size.
	OnStart func(blobs int, bytes int64)
	// OnBytes, if set, is called as blob body bytes arrive, from several
	// goroutines at once.
	OnBytes func(n int64)
}

// Result is what a warm did.
type Result struct {
	// Images holds one entry per image, in the order given.
	Images []ImageResult
	// Manifests and Blobs count the distinct objects received.
	Manifests, Blobs int
	// Bytes is the body bytes received and verified, manifests included.
	Bytes int64
	// Fetched is what cacheyd read from upstream registries while the warm
	// ran (the growth of cacheyd_upstream_bytes_total over every registry);
	// -1 when /metrics could not be read before and after. It includes
	// whatever other clients made cacheyd fetch in the meantime.
	Fetched int64
	// Pulls is what the warm cost in counted pulls: the growth of
	// cacheyd_upstream_pulls_total for the registries warmed (manifest GETs
	// cacheyd sent that the registry counts), including other clients'
	// pulls from those registries meanwhile; -1 when /metrics could not be
	// read before and after.
	Pulls int64
	// ManifestGETs counts the manifest GETs the warm itself sent: what a
	// registry counts when the target is the registry itself.
	ManifestGETs int
	// Budgets are the pull budgets of the registries warmed as cacheyd
	// read them last, after the warm; only those it has read one for.
	Budgets []Budget
}

// Cached is the bytes received that cacheyd already held: Bytes less
// Fetched, at least zero; -1 when Fetched is unknown.
func (r *Result) Cached() int64 {
	if r.Fetched < 0 {
		return -1
	}
	return max(r.Bytes-r.Fetched, 0)
}

// ImageResult is what the warm did for one image.
type ImageResult struct {
	Image Image
	// Digest is the digest the reference resolved to.
	Digest oci.Digest
	// Platforms lists the platforms pulled from an index, as "os/arch" or
	// "os/arch/variant"; empty for a single-platform image.
	Platforms []string
	// Blobs and Bytes count the blobs (configs and layers) of this image
	// and their size; a blob shared with an earlier image counts for both.
	Blobs int
	Bytes int64
	// Err is why this image was not warmed completely; nil on success.
	Err error
}

// Run warms every image through cacheyd. It reads all manifests first, then
// fetches the blobs, each distinct blob once however many images share it.
// An image that fails does not stop the others: its ImageResult carries
// the error, and Run returns all such errors joined, along with the Result.
func Run(ctx context.Context, cfg Config, images []Image) (*Result, error) {
	base, err := parseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	parallel, client := cfg.parallelClient()
	w := &warmer{
		base: base, client: client, platforms: cfg.Platforms, onBytes: cfg.OnBytes,
		res: &Result{Images: make([]ImageResult, len(images))},
	}
	before, scrapeErr := scrape(ctx, client, base)

	// Manifests: one image at a time per worker; each image's manifests
	// are few and small.
	plans := make([]imagePlan, len(images))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, im := range images {
		w.res.Images[i].Image = im
		// Returns once this image's manifests are read, or failed, or ctx ended.
		g.Go(func() error {
			plans[i] = w.resolve(gctx, &w.res.Images[i])
			return nil
		})
	}
	_ = g.Wait() // errors are per image

	// Blobs: each distinct one once, in the order first seen.
	type job struct {
		im     Image
		desc   v1.Descriptor
		owners []int // indexes into res.Images
	}
	var jobs []*job
	seen := map[string]*job{}
	var total int64
	for i, p := range plans {
		if w.res.Images[i].Err != nil {
			continue
		}
		for _, d := range p.blobs {
			w.res.Images[i].Blobs++
			w.res.Images[i].Bytes += d.Size
			key := p.image.Registry + "@" + d.Digest.String()
			if j, ok := seen[key]; ok {
				j.owners = append(j.owners, i)
				continue
			}
			j := &job{im: p.image, desc: d, owners: []int{i}}
			seen[key] = j
			jobs = append(jobs, j)
			total += d.Size
		}
	}
	if cfg.OnStart != nil {
		cfg.OnStart(len(jobs), total)
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, j := range jobs {
		// Returns once the blob is read to its end, or failed, or ctx ended.
		g.Go(func() error {
			if err := w.blob(gctx, j.im, j.desc); err != nil {
				w.fail(j.owners, err)
			}
			return nil
		})
	}
	_ = g.Wait()

	w.res.ManifestGETs = int(w.manifestGETs.Load())
	w.res.Fetched, w.res.Pulls = -1, -1
	if scrapeErr == nil {
		if after, err := scrape(ctx, client, base); err == nil {
			if after.bytes >= before.bytes {
				w.res.Fetched = int64(after.bytes - before.bytes)
			}
			w.res.Pulls, w.res.Budgets = costOf(before, after, images)
		}
	}
	var errs []error
	for _, ir := range w.res.Images {
		if ir.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ir.Image.Ref, ir.Err))
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return w.res, errors.Join(errs...)
}

// warmer is one Run's shared state.
type warmer struct {
	base      string
	client    *http.Client
	platforms []v1.Platform
	onBytes   func(int64)

	manifestGETs atomic.Int64 // manifest GETs sent, for Result.ManifestGETs

	mu  sync.Mutex // guards the counters of res and each ImageResult.Err after resolve
	res *Result
}

// received counts one object received and verified.
func (w *warmer) received(manifest bool, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if manifest {
		w.res.Manifests++
	} else {
		w.res.Blobs++
	}
	w.res.Bytes += n
}

// fail records err on every image in owners that has no error yet.
func (w *warmer) fail(owners []int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range owners {
		if w.res.Images[i].Err == nil {
			w.res.Images[i].Err = err
		}
	}
}

// parallelClient is cfg's Parallel and Client, defaults filled in.
func (cfg Config) parallelClient() (int, *http.Client) {
	parallel := cfg.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	client := cfg.Client
	if client == nil {
		client = newClient(parallel)
	}
	return parallel, client
}

// parseTarget checks cacheyd's base URL and drops a trailing slash.
func parseTarget(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("target %q: want a base URL such as http://127.0.0.1:30123", s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// newClient is the default client: no overall timeout, since a layer may
// take long, but bounded connecting and waiting for headers (a fill
// answers its first byte quickly once upstream does).
func newClient(parallel int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   parallel,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
	}}
}
