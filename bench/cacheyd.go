package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// startCacheyd is the Starter used when Config.Start is nil: cacheyd with
// its own wiring and defaults (app.Defaults), on a free loopback port, the
// cache directory given, the one upstream mapped and its CDN allowed,
// logging nothing.
func startCacheyd(ctx context.Context, c CacheydConfig) (string, func() error, error) {
	cfg := app.Defaults()
	cfg.Listen, cfg.ShutdownTimeout, cfg.Cache.Dir = "127.0.0.1:0", 10*time.Second, c.Dir
	cfg.Upstream.RegistryURLs = map[string]string{c.Registry: c.URL}
	cfg.Upstream.AllowedHosts = []string{c.CDN}
	return app.Start(ctx, cfg, slog.New(slog.DiscardHandler))
}

// startForScenario starts cacheyd for the load or soak scenario on dir (a
// temporary directory when empty) in front of reg. It returns the base URL,
// the cache directory, a stop that acts once, and a cleanup that stops
// cacheyd if the scenario did not and removes a temporary directory.
func startForScenario(ctx context.Context, start Starter, dir, name string, reg *registrytest.Registry) (base, cacheDir string, stop func() error, cleanup func(), err error) {
	removeDir := func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "cacheyd-"+name+"-")
		if err != nil {
			return "", "", nil, nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		dir, removeDir = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	base, stopCacheyd, err := start(ctx, CacheydConfig{Dir: dir, Registry: reg.Host(), URL: reg.URL(), CDN: reg.CDNHost()})
	if err != nil {
		removeDir()
		return "", "", nil, nil, fmt.Errorf("bench: %s: start cacheyd: %w", name, err)
	}
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() { stopErr = stopCacheyd() })
		return stopErr
	}
	return base, dir, stop, func() { _ = stop(); removeDir() }, nil
}
