package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// Private content: what upstream served only with a client's credentials.
// It is cached like anything else, but its record (tier.Entry) lists where it
// came from, and from then on it is marked: a marked digest is served from
// the cache only to a request for a registry/repository recorded as one of
// its sources.
//
//   - A private source (fetched there with a client's credentials): only
//     once that registry accepts the request's own credentials for that
//     repository and digest. The check is an upstream HEAD with the
//     request's Authorization (cheap, and not a pull on Docker Hub), or as
//     cacheyd when the request has none, remembered for grantTTL per
//     credential, repository and digest. A refusal is upstream's own answer
//     (its 401 and challenge).
//   - A public source (fetched there as cacheyd, after the mark was set):
//     to anyone, as any public content.
//   - Anywhere else: a miss. The digest is fetched from the registry the
//     request names, on its own fill, verified, and never from or joined
//     with the private copy; that registry then becomes one more source.
//
// Digests are not secrets (manifests, logs and SBOMs name them), so no
// answer from a registry that is not a source matters, and no answer from
// any registry ever clears a mark: a HEAD that says 200 proves nothing about
// who may have the bytes. Marked content is never kept in the memory tier,
// which has no notion of sources.
const (
	grantTTL  = time.Minute
	maxGrants = 10_000
)

// access is how committed, marked content may be served to a request.
type access uint8

const (
	accessPublic    access = iota // a public source: serve it
	accessCheck                   // a private source: serve once upstream accepts the request's credentials
	accessElsewhere               // not a source: a miss of its own
)

// accessFor decides how e, marked, may be served to a request for source
// ("registry/repository").
func accessFor(e tier.Entry, source string) access {
	switch {
	case slices.Contains(e.Public, source):
		return accessPublic
	case slices.Contains(e.Private, source):
		return accessCheck
	}
	return accessElsewhere
}

// sourceOf names the registry and repository a request is for.
func sourceOf(req *oci.Request) string { return req.Registry + "/" + req.Repository }

// grantKey is one remembered check. The credential is kept only as a hash.
type grantKey struct {
	cred                 [sha256.Size]byte
	registry, repository string
	digest               oci.Digest
}

// privacy remembers checks of credentials and repositories that refused
// cacheyd.
type privacy struct {
	mu     sync.Mutex             // guards grants and refused
	grants map[grantKey]time.Time // until when the grant holds
	// refused remembers, for grantTTL, repositories ("registry/repo") that
	// refused cacheyd, so that a client with credentials goes straight to a
	// fill with them instead of first asking again as cacheyd.
	refused map[string]time.Time
}

func newPrivacy() *privacy {
	return &privacy{grants: map[grantKey]time.Time{}, refused: map[string]time.Time{}}
}

func (p *privacy) granted(k grantKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.grants[k]
	return ok && time.Now().Before(until)
}

func (p *privacy) grant(k grantKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.grants) >= maxGrants {
		now := time.Now()
		for old, until := range p.grants {
			if now.After(until) || len(p.grants) >= maxGrants {
				delete(p.grants, old)
			}
		}
	}
	p.grants[k] = time.Now().Add(grantTTL)
}

// refuse remembers that repo refused cacheyd.
func (p *privacy) refuse(repo string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.refused) >= maxGrants {
		clear(p.refused)
	}
	p.refused[repo] = time.Now().Add(grantTTL)
}

// recentlyRefused reports whether repo refused cacheyd within grantTTL.
func (p *privacy) recentlyRefused(repo string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.refused[repo]
	return ok && time.Now().Before(until)
}

// credID names a credential in fill keys without keeping it readable.
func credID(authorization string) string {
	if authorization == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(authorization))
	return hex.EncodeToString(sum[:])
}

// authorize decides whether req, for a private source of its digest, may
// be served the cached content: it asks that registry, with the request's
// own credentials (or as cacheyd without any), whether it would serve the
// digest. It returns nil, or upstream's own refusal.
func (c *Cache) authorize(ctx context.Context, req *oci.Request) error {
	k := grantKey{cred: sha256.Sum256([]byte(req.Authorization)), registry: req.Registry,
		repository: req.Repository, digest: req.Reference.Digest}
	if c.private.granted(k) {
		return nil
	}
	resp, err := c.origin.Fetch(ctx, req.Head())
	if err != nil {
		return err
	}
	if resp.Digest != "" && resp.Digest != req.Reference.Digest {
		return oci.ErrDenied(fmt.Sprintf("registry answered for %s, not %s", resp.Digest.Short(), req.Reference.Digest.Short()))
	}
	c.private.grant(k)
	return nil
}
