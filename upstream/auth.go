package upstream

import (
	"container/list"
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// cacheyd fetches as itself with go-containerregistry's transport: it pings
// /v2/ for the registry's challenge, and on a Bearer challenge exchanges
// cacheyd's credentials (or none) at the realm for a token scoped to
// repository:<name>:pull; on a Basic challenge it sends the credentials.
// The resulting RoundTripper holds the token and fetches a new one when the
// registry answers 401, so keeping one per (registry, repository) reuses each
// token until it expires. The price is one ping per repository per cache
// entry, on top of the token request.

// identityKey names one cached identity.
type identityKey struct{ registry, repo string }

// identity is cacheyd's authenticated RoundTripper for one repository, or
// the promise of one while it is being set up.
type identity struct {
	key   identityKey
	ready chan struct{} // closed when rt or err is set
	rt    http.RoundTripper
	err   error
}

// identities is a bounded LRU cache of identities. Concurrent requests for
// a repository without one wait for a single setup, so a burst costs one
// ping and one token.
type identities struct {
	build   func(ctx context.Context, t target) (http.RoundTripper, error)
	timeout time.Duration
	max     int

	mu      sync.Mutex // guards entries and lru
	entries map[identityKey]*list.Element
	lru     *list.List // of *identity, most recently used first
}

func newIdentities(max int, timeout time.Duration, build func(context.Context, target) (http.RoundTripper, error)) *identities {
	return &identities{
		build:   build,
		timeout: timeout,
		max:     max,
		entries: make(map[identityKey]*list.Element),
		lru:     list.New(),
	}
}

// get returns the identity for t, setting it up if needed. The setup belongs
// to the cache, not to the request that started it: it runs on its own
// context bounded by the timeout, so one client giving up does not fail the
// others waiting for it. A failed setup is not kept; the next request tries
// again.
func (ids *identities) get(ctx context.Context, t target) (*identity, error) {
	key := identityKey{t.registry, t.repo}
	ids.mu.Lock()
	el, ok := ids.entries[key]
	if ok {
		ids.lru.MoveToFront(el)
	} else {
		el = ids.lru.PushFront(&identity{key: key, ready: make(chan struct{})})
		ids.entries[key] = el
		for ids.lru.Len() > ids.max {
			ids.removeLocked(ids.lru.Back())
		}
	}
	id := el.Value.(*identity)
	ids.mu.Unlock()

	if !ok {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ids.timeout)
		// Stops when build returns, which the timeout bounds.
		go func() {
			defer cancel()
			rt, err := ids.build(bctx, t)
			if err != nil {
				ids.forget(id)
			}
			id.rt, id.err = rt, err
			close(id.ready)
		}()
	}
	select {
	case <-id.ready:
		if id.err != nil {
			return nil, id.err
		}
		return id, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// forget drops id from the cache, if it is still the entry for its key, so
// that the next request sets up a fresh one (after a failed setup, or when
// the token can no longer be refreshed).
func (ids *identities) forget(id *identity) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if el, ok := ids.entries[id.key]; ok && el.Value.(*identity) == id {
		ids.removeLocked(el)
	}
}

// removeLocked drops an element; ids.mu must be held.
func (ids *identities) removeLocked(el *list.Element) {
	ids.lru.Remove(el)
	delete(ids.entries, el.Value.(*identity).key)
}

// newIdentity sets up cacheyd's identity for t's repository.
func (c *Client) newIdentity(ctx context.Context, t target) (http.RoundTripper, error) {
	var opts []name.Option
	if t.base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(t.base.Host, opts...)
	if err != nil {
		return nil, err
	}
	auth, ok := c.creds[t.registry]
	if !ok {
		auth = authn.Anonymous
	}
	ctx = withLabels(ctx, c.labels.of(t.registry), kindAuth)
	guard := realmGuard{inner: c.rt, realm: c.realmRT, policy: c.trust.realms, registry: t.registry, registryAddr: addrKey(urlAddr(t.base))}
	inner := forceScheme{inner: guard, host: t.base.Host, scheme: t.base.Scheme}
	scope := "repository:" + t.repo + ":" + transport.PullScope
	return transport.NewWithContext(ctx, reg, auth, inner, []string{scope})
}

// kindAuth labels the ping and token requests of an identity's setup.
const kindAuth = "auth"
