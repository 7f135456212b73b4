package bench

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/oci"
)

// lazyResult is what one node of a lazy scenario did in a burst.
type lazyResult struct {
	// first is when the node had read its first footer; end when it had
	// read everything (or failed).
	first, end time.Time
	fetches    []puller.Fetch     // manifests and configs, fetched whole
	reads      map[oci.Digest]int // reads of each layer whose bytes matched
	footers    []float64          // how long each footer read took, in seconds
	errs       []error            // one per image that failed
}

// lazyPull reads cat the way a lazy-pulling snapshotter under the kubelet
// does: images one after another; for each, its manifests, then its config
// whole and of each layer the reads of l.plan (footer, table of contents,
// file windows, one after another), Parallel layers at once. A layer the
// node has read for an earlier image (a shared base) is mounted already
// and not read again. It closes the node's connections.
func (n *node) lazyPull(ctx context.Context, cat *catalog, l LazyReads) lazyResult {
	defer n.client.CloseIdleConnections()
	res := lazyResult{reads: map[oci.Digest]int{}}
	plat, err := puller.ParsePlatform(n.cfg.Platform)
	if err != nil { // Config.withDefaults refuses such a platform
		res.errs = append(res.errs, err)
		return res
	}
	var mu sync.Mutex          // guards res.first and res.reads while layers are read
	seen := map[v1.Hash]bool{} // configs fetched and layers mounted; used by this goroutine only
	for _, img := range cat.images {
		p := n.puller(plat, nil)
		im, err := p.Image(ctx, img.repo, img.tag)
		if err != nil {
			res.errs = append(res.errs, fmt.Errorf("%s:%s: %w", img.repo, img.tag, brief(err)))
			continue
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(n.cfg.Parallel)
		for _, m := range im.Manifests {
			if m.Image == nil {
				continue
			}
			if cf := m.Image.Config; !seen[cf.Digest] {
				seen[cf.Digest] = true
				// Returns once the config is verified, or failed.
				g.Go(func() error { _, err := p.Blob(gctx, img.repo, cf); return err })
			}
			for _, desc := range m.Image.Layers {
				if seen[desc.Digest] {
					continue
				}
				seen[desc.Digest] = true
				o, ok := cat.objects[oci.Digest(desc.Digest.String())]
				if !ok || o.content == nil {
					g.Go(func() error { return fmt.Errorf("layer %s is not in the image set", desc.Digest) })
					continue
				}
				// Returns once every read of the layer matched, or one
				// failed, or gctx ended.
				g.Go(func() error {
					return readLayer(gctx, p, img.repo, desc, o.content, l.plan(o.digest, o.size), func(i int, sent, at time.Time) {
						mu.Lock()
						defer mu.Unlock()
						if i == 0 {
							if res.first.IsZero() || at.Before(res.first) {
								res.first = at
							}
							res.footers = append(res.footers, at.Sub(sent).Seconds())
						}
						res.reads[o.digest]++
					})
				})
			}
		}
		if err := g.Wait(); err != nil {
			res.errs = append(res.errs, fmt.Errorf("%s:%s: %w", img.repo, img.tag, brief(err)))
		}
	}
	res.end = time.Now()
	res.fetches = n.fetched()
	return res
}

// readLayer makes the reads of plan, one after another, and checks each
// against the layer's content; read is told of each that matched, when it
// was sent and when it had all its bytes.
func readLayer(ctx context.Context, p *puller.Puller, repo string, desc v1.Descriptor, content []byte, plan []span, read func(i int, sent, at time.Time)) error {
	for i, s := range plan {
		var (
			b    []byte
			err  error
			sent = time.Now()
		)
		if s.suffix {
			b, err = p.BlobSuffix(ctx, repo, desc, s.n)
		} else {
			b, err = p.BlobRange(ctx, repo, desc, s.off, s.n)
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(b, content[s.off:s.off+s.n]) {
			return fmt.Errorf("layer %s: bytes %d-%d are not the layer's", oci.Digest(desc.Digest.String()).Short(), s.off, s.off+s.n-1)
		}
		read(i, sent, time.Now())
	}
	return nil
}

// check reports how a lazy node's reads differ from what it had to read:
// every manifest and config of cat verified once, every read of every
// layer's plan made once with the layer's bytes.
func (r *lazyResult) check(cat *catalog, l LazyReads) error {
	if len(r.errs) > 0 {
		return r.errs[0]
	}
	verified := map[oci.Digest]int{}
	for _, f := range r.fetches {
		if f.Err == nil {
			verified[f.Digest]++
		}
	}
	for d, o := range cat.objects {
		if o.content != nil {
			if want := len(l.plan(d, o.size)); r.reads[d] != want {
				return fmt.Errorf("layer %s: %d reads matched, want %d", d.Short(), r.reads[d], want)
			}
		} else if verified[d] != 1 {
			return fmt.Errorf("%s verified %d times, want once", d.Short(), verified[d])
		}
	}
	if len(verified)+len(r.reads) != len(cat.objects) {
		return fmt.Errorf("fetched %d objects, the image set has %d", len(verified)+len(r.reads), len(cat.objects))
	}
	return nil
}

// settleQuiet and settleLimit bound how long a lazy-cold burst waits, once
// its nodes are done, for the rest of each layer to arrive upstream's way.
const (
	settleQuiet = time.Second
	settleLimit = 5 * time.Minute
)

// lazyBurst has n lazy nodes read the set from base at once (node i from
// base[i mod len(base)]) and measures it; through a cacheyd (LazyCold) it
// then waits until upstream is quiet.
func (r *runner) lazyBurst(ctx context.Context, sc Scenario, n int, base []string, ns string) Result {
	r.resetUpstreams()
	bctx, cancel := context.WithTimeout(ctx, r.cfg.BurstTimeout)
	defer cancel()
	var received atomic.Int64
	stopBar := r.bar(fmt.Sprintf("%-11s ×%-4d", sc, n), int64(n)*r.cfg.Lazy.lazyBytes(r.cat), &received)
	var stopRSS func() int64
	if r.cfg.TargetPID > 0 && sc != LazyDirect {
		stopRSS = sampleRSS(r.cfg.TargetPID)
	}

	start := time.Now()
	results := make([]lazyResult, n)
	r.runNodes(n, base, ns, &received, func(i int, nd *node) { results[i] = nd.lazyPull(bctx, r.cat, r.cfg.Lazy) })
	wall := time.Since(start)
	stopBar()

	res := Result{Scenario: sc, Nodes: n, Seconds: wall.Seconds(), BytesServed: received.Load()}
	res.UpstreamPulls, res.Upstream429 = r.up.reg.Pulls()
	res.UpstreamBytes = r.up.bytes.Load()
	res.AlternateBytes = r.alternateBytes()
	if sc == LazyCold {
		settled := r.up.settle(ctx, settleQuiet, settleLimit)
		res.UpstreamSettledBytes = &settled
	}
	if stopRSS != nil {
		res.PeakRSS = stopRSS()
	}
	res.UpstreamRequests = r.up.reg.Count("", "", "")
	var (
		firsts, ends, footers []float64
		failed                reasons
	)
	for _, lr := range results {
		if err := lr.check(r.cat, r.cfg.Lazy); err != nil {
			failed.add(err)
			continue
		}
		res.OK++
		firsts = append(firsts, lr.first.Sub(start).Seconds())
		ends = append(ends, lr.end.Sub(start).Seconds())
		footers = append(footers, lr.footers...)
	}
	res.Failures = failed.list()
	res.NodeSeconds = percentiles(ends)
	first, footer := percentiles(firsts), percentiles(footers)
	res.FirstWindowSeconds, res.FooterSeconds = &first, &footer
	return res
}
