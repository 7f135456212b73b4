package tier

import (
	"context"
	"errors"
	"io"

	"github.com/cacheyd/cacheyd/oci"
)

// Cache is the tiered read path. (Implementation in progress.)
type Cache struct{}

// New opens the cache in cfg.Dir.
func New(cfg Config, origin Origin) (*Cache, error) { return &Cache{}, nil }

// Close stops background work.
func (c *Cache) Close() error { return nil }

func (c *Cache) get(ctx context.Context, req *oci.Request) (*Object, error) {
	return nil, errors.New("not yet")
}

type fill struct{}

func (f *fill) newReader(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	return nil, errors.New("not yet")
}
