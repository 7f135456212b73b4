package upstream

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"strings"

	"github.com/cacheyd/cacheyd/oci"
)

// Alternate fetches one registry's content by digest from another registry
// that holds the same (a public mirror such as mirror.gcr.io for Docker
// Hub, or the operator's own registry): a request of the registry it
// stands in for is rewritten to the alternate's address, with its path
// prefix before the repository, and fetched as any registry is, with
// cacheyd's own identity (the anonymous token flow, or the credentials
// file's entry for the alternate's host). It never checks what it fetches:
// the content is verified against its digest by whoever reads it.
type Alternate struct {
	c      *Client
	name   string // the registry name the alternate is fetched under: its host[:port]
	prefix string // "" or a path before every repository, "docker" for "https://public.ecr.aws/docker"
}

// NewAlternate returns the alternate at rawURL ("https://mirror.gcr.io",
// "https://public.ecr.aws/docker": scheme, host, optional port and path
// prefix), fetched with cfg as the Client's own fetches are. Its address
// is trusted as a RegistryURLs entry is, for its own fetches and
// redirects only; every address cfg names stays withheld from them as it
// is from any other registry's, and redirects follow the same address
// policy. cfg.Registries does not apply: the alternate is the operator's
// choice.
func NewAlternate(cfg Config, rawURL string) (*Alternate, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("upstream: alternate %.100q: %w", rawURL, err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" && !oci.ValidName(prefix) {
		return nil, fmt.Errorf("upstream: alternate %.100q: the path is not a repository prefix", rawURL)
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host}
	if _, err := parseBaseURL(base.String()); err != nil || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("upstream: alternate %.100q: want http(s)://host[:port][/prefix]", rawURL)
	}
	name, err := oci.NormalizeRegistry(u.Host)
	if err != nil {
		return nil, fmt.Errorf("upstream: alternate %.100q: %w", rawURL, err)
	}
	cfg.RegistryURLs = maps.Clone(cfg.RegistryURLs)
	if cfg.RegistryURLs == nil {
		cfg.RegistryURLs = map[string]string{}
	}
	cfg.RegistryURLs[name] = base.String()
	cfg.Registries = nil
	c, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream: alternate %.100q: %w", rawURL, err)
	}
	return &Alternate{c: c, name: name, prefix: prefix}, nil
}

// Fetch fetches req, a request of the registry the alternate stands in
// for, from the alternate.
func (a *Alternate) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	r := *req
	r.Registry = a.name
	if a.prefix != "" {
		r.Repository = a.prefix + "/" + req.Repository
	}
	return a.c.Fetch(ctx, &r)
}
