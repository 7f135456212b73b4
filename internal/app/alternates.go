package app

import (
	"fmt"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
	"github.com/cacheyd/cacheyd/upstream"
)

// Alternate is a registry that serves Registry's content by digest from
// URL ("https://mirror.gcr.io", "https://public.ecr.aws/docker": a path
// prefix goes before every repository).
type Alternate struct {
	Registry string
	URL      string
}

// alternates are cfg's alternates as sources, in order.
func alternates(cfg Config) ([]sources.AlternateRegistry, error) {
	switch cfg.AlternateMode {
	case "", sources.Prefer:
	default:
		return nil, fmt.Errorf("alternate mode %q: want %q", cfg.AlternateMode, sources.Prefer)
	}
	out := make([]sources.AlternateRegistry, 0, len(cfg.Alternates))
	for _, a := range cfg.Alternates {
		reg, err := oci.NormalizeRegistry(a.Registry)
		if err != nil {
			return nil, fmt.Errorf("alternate for %s: %w", a.Registry, err)
		}
		f, err := upstream.NewAlternate(cfg.Upstream, a.URL)
		if err != nil {
			return nil, err
		}
		out = append(out, sources.AlternateRegistry{Registry: reg, Fetcher: f})
	}
	return out, nil
}
