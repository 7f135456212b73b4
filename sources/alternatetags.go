package sources

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Alternates for tags (Set.AlternateTags). A tag is its registry's word,
// resolved by a HEAD it does not count, so the registry is asked first,
// once, as ever. Only when it fails (a 429, its own or the upstream
// client's held one; a 5xx; no answer at all) and the cache holds no
// answer it would serve stale (oci.Request.Cached) are the alternates of
// its registry asked for the tag, in order. Its 404 or 401 is an answer,
// and stands; so does its failure when no alternate has the tag. A tag
// fetched with a client's credentials never goes to an alternate. A
// mirror's tag may lag the registry's: each tag an alternate resolves is
// counted (metrics.AlternateTags) and logged.

// tagRegistry plans the registry for every request of its place: wrapped,
// so that its failure passes to the alternates after it, for a tag they
// may resolve; plain otherwise.
type tagRegistry struct {
	registry Fetcher
	alts     tagAlternates
	first    Fetcher // the registry, its failures passed on (registryFirst)
}

func newTagRegistry(registry Fetcher, alts tagAlternates) *tagRegistry {
	// registryFirst with no reserve: it passes over nothing, and makes
	// only the registry's failures the route's to pass on.
	return &tagRegistry{registry: registry, alts: alts, first: &registryFirst{&fallbackPlan{registry: registry}}}
}

// Plan returns the registry's place for req.
func (r *tagRegistry) Plan(req *oci.Request, keyed bool) (string, []Fetcher) {
	if _, alts := r.alts.Plan(req, keyed); len(alts) > 0 {
		return "", []Fetcher{r.first}
	}
	return "", []Fetcher{r.registry}
}

// tagAlternates plans the alternates of a tag's registry, in the
// operator's order, for a manifest by tag fetched as cacheyd with no
// answer cached; nothing for any other request.
type tagAlternates map[string][]Fetcher

func newTagAlternates(as []AlternateRegistry, m *metrics.Metrics, log *slog.Logger) tagAlternates {
	out := make(tagAlternates)
	for i, a := range as {
		name := a.Name
		if name == "" {
			name = fmt.Sprintf("alternate %d", i+1)
		}
		out[a.Registry] = append(out[a.Registry], &alternateTag{f: a.Fetcher, name: name, m: m, log: log})
	}
	return out
}

// Plan returns the alternates of req's registry, if req's tag may be
// resolved at one.
func (as tagAlternates) Plan(req *oci.Request, _ bool) (string, []Fetcher) {
	if req.Kind != oci.KindManifest || req.Reference.IsDigest() || req.Authorization != "" || req.Cached {
		return "", nil
	}
	return "", as[req.Registry]
}

// alternateTag is one alternate asked for a tag: every failure of its
// own, a 404 included, is a *Failure, so that the next is asked and, past
// the last, the registry's own answer stands. What it answers is not
// checked against anything: the tag is its word, the bytes are verified
// against the digest it names as any manifest's are.
type alternateTag struct {
	f    Fetcher
	name string // the alternate, as the operator named it
	m    *metrics.Metrics
	log  *slog.Logger
}

func (a *alternateTag) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Authorization != "" {
		// The route of a tag's lookup also carries the request with a
		// client's credentials, after cacheyd's refusal: never here.
		return nil, ErrNotAsked
	}
	resp, err := a.f.Fetch(ctx, req)
	if err != nil {
		return nil, alternateFailed(ctx, err)
	}
	// A HEAD that names no digest resolves nothing yet: the GET after it
	// does, and is the one counted.
	if req.Method == http.MethodGet || resp.Digest != "" {
		a.m.AlternateTags.WithLabelValues(req.Registry).Inc()
		a.log.Warn("sources: a tag resolved at an alternate, its registry failing and nothing cached",
			"registry", req.Registry, "repository", req.Repository, "tag", req.Reference.Tag,
			"alternate", a.name, "digest", resp.Digest.Short())
	}
	return resp, nil
}
