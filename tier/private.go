package tier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// Private content: what upstream served only with a client's credentials.
// It is cached like anything else, but marked, and a marked digest is
// served from the cache only to a request whose credentials upstream
// accepts for that repository and digest. The check is an upstream HEAD
// with the client's Authorization (cheap, and not a pull on Docker Hub),
// remembered for grantTTL per credential, repository and digest. A request
// without credentials gets what upstream gives an anonymous client (its
// 401), never the cached bytes.
const (
	grantTTL  = time.Minute
	maxGrants = 10_000
)

// grantKey is one remembered check. The credential is kept only as a hash.
type grantKey struct {
	cred                 [sha256.Size]byte
	registry, repository string
	digest               oci.Digest
}

// privacy holds the marks and the remembered checks.
type privacy struct {
	mu     sync.Mutex // guards marks, grants and refused
	marks  map[oci.Digest]bool
	grants map[grantKey]time.Time // until when the grant holds
	// refused remembers, for grantTTL, repositories ("registry/repo") that
	// refused cacheyd, so that a client with credentials goes straight to a
	// fill with them instead of first asking again as cacheyd.
	refused map[string]time.Time
}

func newPrivacy(marked map[oci.Digest][]string) *privacy {
	p := &privacy{marks: map[oci.Digest]bool{}, grants: map[grantKey]time.Time{}, refused: map[string]time.Time{}}
	for dg := range marked {
		p.marks[dg] = true
	}
	return p
}

func (p *privacy) marked(dg oci.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.marks[dg]
}

// set marks dg private, or public (clearing the mark) when it was fetched
// as cacheyd.
func (p *privacy) set(dg oci.Digest, private bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if private {
		p.marks[dg] = true
	} else {
		delete(p.marks, dg)
	}
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

// authorize decides whether req may be served content upstream gave only
// to a client's credentials. It returns nil, or upstream's own refusal.
func (c *Cache) authorize(ctx context.Context, req *oci.Request) error {
	head := oci.Request{Method: http.MethodHead, Kind: req.Kind, Registry: req.Registry,
		Repository: req.Repository, Reference: req.Reference, Accept: req.Accept}
	if req.Authorization == "" {
		// What would upstream tell an anonymous client? If it serves the
		// content after all, the content has become public.
		if _, err := c.origin.Fetch(ctx, &head); err != nil {
			return err
		}
		c.private.set(req.Reference.Digest, false)
		return nil
	}
	k := grantKey{cred: sha256.Sum256([]byte(req.Authorization)), registry: req.Registry,
		repository: req.Repository, digest: req.Reference.Digest}
	if c.private.granted(k) {
		return nil
	}
	head.Authorization = req.Authorization
	if _, err := c.origin.Fetch(ctx, &head); err != nil {
		return err
	}
	c.private.grant(k)
	return nil
}
