package warm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/oci"
)

// Estimate is what a dry run found: what a warm of the same images would
// cost in counted pulls, as of now.
//
// A dry run sends no request a registry counts: tags are resolved with a
// HEAD through cacheyd (which resolves them upstream by HEAD), and each
// manifest by digest is asked with a HEAD whose X-Cacheyd-Source says
// whether cacheyd holds it (memory or disk). Only a manifest it holds is
// then read with a GET, which cacheyd answers from its tiers, so that an
// index's platform manifests can be followed. A manifest it does not hold
// would be one counted pull; an index it does not hold cannot be read
// without that pull, so its platform manifests stay unknown.
type Estimate struct {
	// Images holds one entry per image, in the order given.
	Images []ImageEstimate
	// Manifests counts the distinct manifests cacheyd does not hold: each
	// is one counted pull when the warm fetches it.
	Manifests int
	// Indexes counts those of Manifests that are indexes: a warm also
	// pulls each chosen platform manifest of theirs that cacheyd does not
	// hold, which only reading the index could tell, so each may cost up
	// to one more pull per chosen platform.
	Indexes int
	// Pulls is what the dry run itself cost (the growth of
	// cacheyd_upstream_pulls_total for the registries named), 0 unless
	// cacheyd evicted a manifest between its HEAD and its GET or other
	// clients pulled meanwhile; -1 when /metrics could not be read.
	Pulls int64
	// Budgets are the pull budgets of the registries named, as cacheyd last
	// read them, when it has.
	Budgets []Budget
}

// ImageEstimate is what a dry run found for one image.
type ImageEstimate struct {
	Image Image
	// Digest is what the reference resolves to now.
	Digest oci.Digest
	// Manifests and Indexes count this image's manifests that cacheyd does
	// not hold, as Estimate's do; one shared with an earlier image counts
	// for both.
	Manifests, Indexes int
	// Err is why the image could not be looked at; nil on success.
	Err error
}

// heldSources are the X-Cacheyd-Source values of an answer from cacheyd's
// own tiers.
var heldSources = map[string]bool{"memory": true, "disk": true}

// DryRun finds what Run would cost for images without costing a counted
// pull (see Estimate). An image that cannot be looked at does not stop the
// others; DryRun returns all such errors joined, along with the Estimate.
func DryRun(ctx context.Context, cfg Config, images []Image) (*Estimate, error) {
	base, err := parseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	parallel, client := cfg.parallelClient()
	d := &dryRunner{base: base, client: client, platforms: cfg.Platforms, seen: map[string]bool{}}
	est := &Estimate{Images: make([]ImageEstimate, len(images))}
	before, scrapeErr := scrape(ctx, client, base)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, im := range images {
		est.Images[i].Image = im
		// Returns once this image's manifests are looked at, or failed, or ctx ended.
		g.Go(func() error {
			d.image(gctx, &est.Images[i])
			return nil
		})
	}
	_ = g.Wait() // errors are per image

	var errs []error
	for _, ie := range est.Images {
		if ie.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ie.Image.Ref, ie.Err))
		}
	}
	est.Manifests, est.Indexes = d.manifests, d.indexes
	est.Pulls, est.Budgets = budgetAfter(ctx, client, base, before, scrapeErr, images)
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return est, errors.Join(errs...)
}

// dryRunner is one DryRun's shared state.
type dryRunner struct {
	base      string
	client    *http.Client
	platforms []v1.Platform

	mu                 sync.Mutex      // guards seen, manifests and indexes
	seen               map[string]bool // registry@digest of the manifests looked at
	manifests, indexes int
}

// image looks at one image's manifests.
func (d *dryRunner) image(ctx context.Context, ie *ImageEstimate) {
	im := ie.Image
	ie.Digest = im.Reference.Digest
	if !im.Reference.IsDigest() {
		h, err := d.head(ctx, im, im.Reference.Tag)
		if err != nil {
			ie.Err = hint(err, im)
			return
		}
		if ie.Digest, err = oci.ParseDigest(h.Get("Docker-Content-Digest")); err != nil {
			// Resolving it by GET would be a counted pull.
			ie.Err = fmt.Errorf("HEAD manifest %s: no digest in the answer, and a dry run resolves tags by HEAD alone", im.Reference.Tag)
			return
		}
	}
	if err := d.walk(ctx, ie, ie.Digest, 0); err != nil {
		ie.Err = hint(err, im)
	}
}

// walk looks at manifest dg of ie's image: counted when cacheyd does not
// hold it, else read from cacheyd and, for an index, followed to the
// chosen platforms.
func (d *dryRunner) walk(ctx context.Context, ie *ImageEstimate, dg oci.Digest, depth int) error {
	im := ie.Image
	h, err := d.head(ctx, im, string(dg))
	if err != nil {
		return err
	}
	if !heldSources[h.Get(oci.SourceHeader)] {
		mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
		index := types.MediaType(strings.TrimSpace(mt)).IsIndex()
		ie.Manifests++
		if index {
			ie.Indexes++
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if key := im.Registry + "@" + string(dg); !d.seen[key] {
			d.seen[key] = true
			d.manifests++
			if index {
				d.indexes++
			}
		}
		return nil
	}
	p := &puller.Puller{Client: d.client, Base: d.base, Namespace: im.Registry, Platforms: d.platforms}
	m, err := p.Manifest(ctx, im.Repository, dg)
	if err != nil || m.Index == nil {
		return err
	}
	if depth >= maxIndexDepth {
		return fmt.Errorf("index %s: indexes nested deeper than %d", dg.Short(), maxIndexDepth)
	}
	children, err := puller.Choose(m.Index.Manifests, d.platforms)
	if err != nil {
		return fmt.Errorf("index %s: %w", dg.Short(), err)
	}
	for _, c := range children {
		cd, err := oci.ParseDigest(c.Digest.String())
		if err != nil {
			return fmt.Errorf("index %s: %w", dg.Short(), err)
		}
		if err := d.walk(ctx, ie, cd, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// maxIndexDepth bounds indexes nested in indexes, as the puller does.
const maxIndexDepth = 2

// head sends a HEAD for im's manifest ref through cacheyd and returns the
// answer's headers; any status but 200 is a *puller.StatusError.
func (d *dryRunner) head(ctx context.Context, im Image, ref string) (http.Header, error) {
	u := d.base + "/v2/" + im.Repository + "/manifests/" + ref + "?ns=" + url.QueryEscape(im.Registry)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", strings.Join(oci.ManifestMediaTypes, ", "))
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &puller.StatusError{Method: http.MethodHead, Kind: puller.KindManifest, Repository: im.Repository, Ref: ref, URL: u, Status: resp.StatusCode}
	}
	return resp.Header, nil
}
