package app

import (
	"log/slog"
	"slices"
	"strings"
)

// servedRegistries is the start-up line's account of which registries
// cacheyd serves: the allow-list, or every public registry when none is
// set (an empty list would read as "none").
func servedRegistries(allowed []string) slog.Attr {
	if len(allowed) == 0 {
		return slog.String("registries", "every public registry")
	}
	return slog.String("registries", strings.Join(allowed, ","))
}

// registryURLs is the start-up line's account of the registries fetched
// from another URL (--registry-url), as name=url sorted by name (upstream
// refuses a URL with more than scheme, host and port, so none holds a
// password): the mapping an operator checks first when a registry's
// content does not come from where they meant. None mapped: "none".
func registryURLs(urls map[string]string) slog.Attr {
	if len(urls) == 0 {
		return slog.String("registry_urls", "none")
	}
	pairs := make([]string, 0, len(urls))
	for name, raw := range urls {
		pairs = append(pairs, name+"="+raw)
	}
	slices.Sort(pairs)
	return slog.String("registry_urls", strings.Join(pairs, ","))
}
