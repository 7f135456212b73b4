package cluster

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// composed is an origin's sources in front of upstream, composed as the
// composition root composes them (internal/app): Route is the key a route
// decided now has, Fetch fetches one request through the policy, keyed by
// its Route.
type composed struct {
	*Origin
	pol *sources.Policy
}

// compose starts an origin for cfg in front of upstream; it is closed when
// the test ends.
func compose(t *testing.T, cfg Config, upstream sources.Fetcher) *composed {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return composedOf(o, upstream)
}

func composedOf(o *Origin, upstream sources.Fetcher) *composed {
	return &composed{Origin: o, pol: sources.New(sources.Set{Owner: o.Owner(), Parent: o.Parent(), Registry: upstream,
		Metrics: o.m, Logger: o.log})}
}

func (c *composed) Route(req *oci.Request) string { return c.pol.Route(req).Key() }

func (c *composed) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	return c.pol.Fetch(ctx, req)
}
