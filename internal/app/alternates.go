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
		if cfg.BudgetReserve != 0 {
			return nil, fmt.Errorf("budget reserve %d: it applies to alternate mode %q only", cfg.BudgetReserve, sources.Fallback)
		}
	case sources.Fallback:
		if cfg.BudgetReserve < 0 {
			return nil, fmt.Errorf("budget reserve %d: want 0 or more pulls", cfg.BudgetReserve)
		}
	default:
		return nil, fmt.Errorf("alternate mode %q: want %q or %q", cfg.AlternateMode, sources.Prefer, sources.Fallback)
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
		out = append(out, sources.AlternateRegistry{Registry: reg, Fetcher: f, Name: a.URL})
	}
	return out, nil
}

// remaining tells the sources a registry's pull budget as up last read it
// from the registry's answers (the few registries that stated one).
func remaining(up *upstream.Client) sources.Remaining { return up.Remaining }
