package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// startCacheyd is the Starter used when Config.Start is nil: cacheyd with
// its own wiring and defaults (app.Defaults), on a free loopback port, the
// cache directory given, the one upstream mapped and its CDN allowed, its
// alternate and its bucket if any, logging nothing.
func startCacheyd(ctx context.Context, c CacheydConfig) (string, func() error, error) {
	cfg := app.Defaults()
	cfg.Listen, cfg.ShutdownTimeout, cfg.Cache.Dir = "127.0.0.1:0", 10*time.Second, c.Dir
	cfg.Upstream.RegistryURLs = map[string]string{c.Registry: c.URL}
	cfg.Upstream.AllowedHosts = []string{c.CDN}
	if c.Alternate != "" {
		cfg.Alternates = []app.Alternate{{Registry: c.Registry, URL: c.Alternate}}
	}
	if c.Listener != nil {
		cfg.Listener, cfg.Listen = c.Listener, c.Listener.Addr().String()
	}
	if s := c.Store; s != nil {
		cfg.Store.Bucket, cfg.Store.Endpoint, cfg.Store.Region, cfg.Store.Prefix = s.Bucket, s.Endpoint, s.Region, s.Prefix
		cfg.Store.PathStyle, cfg.Store.AccessKey, cfg.Store.SecretKey = true, s.AccessKey, s.SecretKey
	}
	if len(c.Peers) > 0 {
		cfg.Cluster = cluster.Config{Peers: c.Peers, Advertise: cfg.Listen, Secret: c.Secret}
	}
	return app.Start(ctx, cfg, slog.New(slog.DiscardHandler))
}

// startCluster starts cfg.Replicas replicas as one cluster, each with its
// own cache directory under dir, and returns where nodes reach them: each
// replica's base URL for BalanceNode, one balancer's that hands the nodes'
// connections to them in turn for BalanceConnection. stop closes the
// balancer, then stops every replica.
func startCluster(ctx context.Context, cfg *Config, dir string, c CacheydConfig) ([]string, func() error, error) {
	lns := make([]net.Listener, cfg.Replicas)
	peers := make([]string, cfg.Replicas)
	closeAll := func(lns []net.Listener) {
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
	}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll(lns)
			return nil, nil, fmt.Errorf("bench: replica %d: %w", i, err)
		}
		lns[i], peers[i] = ln, ln.Addr().String()
	}
	// One secret for the replicas of this run.
	var key [32]byte
	_, _ = rand.Read(key[:]) // never fails (crypto/rand)
	secret := hex.EncodeToString(key[:])
	var stops []func() error
	stopAll := func() error {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s())
		}
		return errors.Join(errs...)
	}
	for i, ln := range lns {
		rc := c
		rc.Dir, rc.Listener, rc.Peers, rc.Secret = filepath.Join(dir, "replica-"+strconv.Itoa(i)), ln, peers, secret
		if err := os.MkdirAll(rc.Dir, 0o750); err != nil {
			closeAll(lns[i:])
			return nil, nil, errors.Join(fmt.Errorf("bench: %w", err), stopAll())
		}
		_, stop, err := cfg.Start(ctx, rc)
		if err != nil {
			closeAll(lns[i+1:])
			return nil, nil, errors.Join(fmt.Errorf("bench: replica %d: %w", i, err), stopAll())
		}
		stops = append(stops, stop)
	}
	if cfg.Balance != BalanceConnection {
		bases := make([]string, len(peers))
		for i, p := range peers {
			bases[i] = "http://" + p
		}
		return bases, stopAll, nil
	}
	lb, err := newBalancer(peers)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("bench: balancer: %w", err), stopAll())
	}
	return []string{lb.url()}, func() error { return errors.Join(lb.close(), stopAll()) }, nil
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
