package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/server"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/upstream"
)

// startCacheyd is the Starter used when Config.Start is nil: cacheyd wired
// from upstream, tier and server as cmd/cacheyd does, with cacheyd's
// default budgets (256 MiB memory, objects up to 1 MiB in memory, a 1m tag
// TTL), its metrics at /metrics (the soak reads them), listening on a free
// loopback port, logging nothing.
func startCacheyd(_ context.Context, c CacheydConfig) (string, func() error, error) {
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	m := metrics.New(reg)
	origin, err := upstream.New(upstream.Config{
		RegistryURLs: map[string]string{c.Registry: c.URL}, AllowedHosts: []string{c.CDN},
		UserAgent: "cacheyd-bench", Metrics: m, Logger: log,
	})
	if err != nil {
		return "", nil, err
	}
	cache, err := tier.New(tier.Config{
		Dir: c.Dir, MemoryBytes: 256 << 20, MemoryMaxObject: 1 << 20, TagTTL: time.Minute, Metrics: m, Logger: log,
	}, origin)
	if err != nil {
		return "", nil, err
	}
	srv := server.New(server.Config{Name: "cacheyd", Logger: log, Metrics: m, Gatherer: reg}, cache)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cache.Close()
		return "", nil, fmt.Errorf("bench: listen: %w", err)
	}
	served := make(chan error, 1)
	// Stops when stop shuts the server down.
	go func() { served <- srv.Serve(ln) }()
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-served; serr != nil && !errors.Is(serr, net.ErrClosed) {
			err = errors.Join(err, serr)
		}
		return errors.Join(err, cache.Close())
	}
	return "http://" + ln.Addr().String(), stop, nil
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
