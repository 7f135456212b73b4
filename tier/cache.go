package tier

import (
	"context"
	"log/slog"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Config configures a Cache. The zero value of every field but Dir is usable.
type Config struct {
	// Dir holds the disk tier. Required. Everything in it belongs to the
	// cache: it may be wiped at any time while the cache is stopped.
	Dir string
	// MemoryBytes is the memory tier's budget in bytes. Zero disables it.
	MemoryBytes int64
	// MemoryMaxObject is the largest object kept in memory, in bytes.
	// Zero means 1 MiB. Manifests (at most 4 MiB) are kept if they fit.
	MemoryMaxObject int64
	// DiskBytes is the disk tier's budget in bytes; least recently used
	// objects are evicted beyond it. Zero means unlimited.
	DiskBytes int64
	// TagTTL is how long a tag's answer is used before it is asked upstream
	// again. Zero means ask every time.
	TagTTL time.Duration
	// TagStaleMax is how long past TagTTL the last known answer for a tag is
	// served when upstream cannot answer. Zero means 24h; negative, never.
	TagStaleMax time.Duration
	// FillTimeout bounds one fill from first request to last byte. Zero
	// means 30 minutes.
	FillTimeout time.Duration
	// Metrics receives counts; nil means counts go nowhere.
	Metrics *metrics.Metrics
	// Logger receives background fill outcomes; nil means slog.Default().
	Logger *slog.Logger
}

// Get answers a request for a manifest or blob. req.Method "HEAD" answers
// the headers only (an upstream HEAD on a miss, never a GET). Errors that
// are a registry's answer (404, 401 with its challenge, ...) are *oci.Error.
func (c *Cache) Get(ctx context.Context, req *oci.Request) (*Object, error) {
	return c.get(ctx, req)
}
