package oci

import (
	"fmt"
	"net/http"
	"slices"
)

// RegistryList is the list of registries an operator restricts cacheyd to,
// as canonical names (see NormalizeRegistry), sorted and without
// duplicates. An empty list serves every registry.
//
// The one rule it holds is Check; the server applies it before the cache is
// asked (so nothing is fetched and nothing cached is served), and the
// upstream client applies it again before it dials, so that no path to the
// network skips it.
type RegistryList []string

// ParseRegistryList validates names and returns them as a RegistryList:
// each is normalized (so "index.docker.io" is docker.io), duplicates are
// dropped. No names gives the empty list, which serves every registry.
func ParseRegistryList(names []string) (RegistryList, error) {
	var out RegistryList
	for _, n := range names {
		canon, err := NormalizeRegistry(n)
		if err != nil {
			return nil, fmt.Errorf("registry list: %w", err)
		}
		out = append(out, canon)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Restricted reports whether the list names registries at all; an empty
// list serves every registry.
func (l RegistryList) Restricted() bool { return len(l) > 0 }

// Contains reports whether the list serves registry, a canonical name.
func (l RegistryList) Contains(registry string) bool {
	if !l.Restricted() {
		return true
	}
	_, found := slices.BinarySearch(l, registry)
	return found
}

// Check answers a request for registry (a canonical name): nil when the
// list serves it, else 403 DENIED. Denied rather than NAME_UNKNOWN: the
// repository may well exist; this cache is not allowed to fetch it, and a
// client such as containerd tries its next host.
func (l RegistryList) Check(registry string) error {
	if l.Contains(registry) {
		return nil
	}
	return &Error{
		Status:  http.StatusForbidden,
		Code:    CodeDenied,
		Message: "registry " + quoteShort(registry) + " is not served by this cache",
	}
}
