package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/internal/puller"
	"github.com/cacheyd/cacheyd/oci"
)

// node is one simulated Kubernetes node: a containerd with an empty
// content store and its own connections, pulling the image set the way the
// kubelet has it pulled, one image after another (serializeImagePulls, the
// default), each image as containerd pulls it.
type node struct {
	client *http.Client
	// base and ns say where it pulls from: a cacheyd with ?ns=, or the
	// registry itself with no ns.
	base, ns string
	cfg      *Config
	progress func(int64)

	mu      sync.Mutex // guards fetches
	fetches []puller.Fetch
}

// nodeResult is what one node did in a burst.
type nodeResult struct {
	end     time.Time
	fetches []puller.Fetch
	errs    []error // one per image that failed
}

func newNode(base, ns string, cfg *Config, progress func(int64)) *node {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: cfg.Parallel + 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &node{client: &http.Client{Transport: tr}, base: base, ns: ns, cfg: cfg, progress: progress}
}

// pull pulls every image of cat and closes the node's connections.
func (n *node) pull(ctx context.Context, cat *catalog) nodeResult {
	defer n.client.CloseIdleConnections()
	store := map[oci.Digest]bool{} // the node's content store; used by this goroutine only
	var res nodeResult
	plat, err := puller.ParsePlatform(n.cfg.Platform)
	if err != nil { // Config.withDefaults refuses such a platform
		res.errs = append(res.errs, err)
		return res
	}
	for _, img := range cat.images {
		p := n.puller(plat, func(d oci.Digest) bool { return store[d] })
		pr, err := p.Pull(ctx, img.repo, img.tag)
		if pr != nil {
			for _, d := range pr.Blobs {
				store[d] = true
			}
		}
		if err != nil {
			res.errs = append(res.errs, fmt.Errorf("%s:%s: %w", img.repo, img.tag, brief(err)))
		}
	}
	res.end = time.Now()
	res.fetches = n.fetched()
	return res
}

// fetched returns what the node has fetched whole so far.
func (n *node) fetched() []puller.Fetch {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fetches
}

// puller is the node's puller for one image: known says what its content
// store holds.
func (n *node) puller(plat v1.Platform, known func(oci.Digest) bool) *puller.Puller {
	var progress func(puller.Kind, int64)
	if n.progress != nil {
		progress = func(_ puller.Kind, b int64) { n.progress(b) }
	}
	// Tokens: straight from the upstream a node answers its challenge, as
	// containerd does.
	return &puller.Puller{
		Client: n.client, Base: n.base, Namespace: n.ns, Platforms: []v1.Platform{plat}, Tokens: true,
		Parallel: n.cfg.Parallel, Resume: n.cfg.Resume,
		Known:    known,
		Progress: progress,
		Observe:  n.observe,
	}
}

func (n *node) observe(f puller.Fetch) {
	n.mu.Lock()
	n.fetches = append(n.fetches, f)
	n.mu.Unlock()
}

// check reports how a node's pull differs from what it had to fetch: every
// object of cat exactly once, each with its digest verified, nothing else.
func (r *nodeResult) check(cat *catalog) error {
	if len(r.errs) > 0 {
		return r.errs[0]
	}
	verified := map[oci.Digest]int{}
	for _, f := range r.fetches {
		if f.Err == nil {
			verified[f.Digest]++
		}
	}
	for d := range cat.objects {
		if verified[d] != 1 {
			return fmt.Errorf("%s verified %d times, want once", d.Short(), verified[d])
		}
	}
	for d := range verified {
		if _, ok := cat.objects[d]; !ok {
			return fmt.Errorf("fetched %s, which is not in the image set", d.Short())
		}
	}
	return nil
}

// brief shortens an unexpected status to what it was and on what kind of
// request, without the reference, so that the nodes it stopped are counted
// as one reason rather than one per digest.
func brief(err error) error {
	var se *puller.StatusError
	if !errors.As(err, &se) {
		return err
	}
	kind := "request"
	switch se.Kind {
	case puller.KindManifest:
		kind = "manifest"
	case puller.KindBlob:
		kind = "blob"
	}
	return fmt.Errorf("%s %s answered %d %s", se.Method, kind, se.Status, http.StatusText(se.Status))
}
