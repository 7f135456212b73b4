package tier

import (
	"context"

	"github.com/cacheyd/cacheyd/oci"
)

// Origin fetches content the cache does not hold: an upstream registry, or
// (later) another cache. Errors that are a registry's answer are *oci.Error;
// failing to reach the registry at all wraps oci.ErrUpstreamUnavailable.
type Origin interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// OriginFunc adapts a function to Origin.
type OriginFunc func(ctx context.Context, req *oci.Request) (*oci.Response, error)

// Fetch calls f.
func (f OriginFunc) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	return f(ctx, req)
}
