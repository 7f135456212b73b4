package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/server"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/upstream"
)

// The seams, checked at compile time: the consumer of each declares it.
var (
	_ tier.Origin  = (*upstream.Client)(nil)
	_ server.Cache = (*tier.Cache)(nil)
)

// serveCmd is "cacheyd serve", the default command.
type serveCmd struct{}

// Run starts cacheyd and serves until SIGINT or SIGTERM.
func (serveCmd) Run(s *serveFlags) error {
	log := newLogger(s.LogLevel, s.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.serve(ctx, log, nil)
}

// serveFlags holds every flag of cacheyd. Defaults make a flag-free start
// useful: port 30123, a cache directory in the user's cache folder, 256 MiB
// of memory and 20 GiB of disk.
type serveFlags struct {
	Listen          string        `group:"Server" default:":30123" help:"Address to serve the registry API, /metrics and health on."`
	ShutdownTimeout time.Duration `group:"Server" default:"30s" help:"On SIGTERM, how long responses in flight may take to finish."`

	CacheDir        string        `group:"Cache" placeholder:"DIR" help:"Disk tier directory (default: cacheyd in the user cache directory, e.g. ~/.cache/cacheyd). Safe to wipe while stopped."`
	MemoryBytes     byteSize      `group:"Cache" default:"256MiB" help:"Memory tier budget in bytes (0 disables it)."`
	MemoryMaxObject byteSize      `group:"Cache" default:"1MiB" help:"Largest object kept in memory, in bytes."`
	DiskBytes       byteSize      `group:"Cache" default:"20GiB" help:"Disk tier budget in bytes; least recently used content is evicted beyond it (0: unlimited)."`
	TagTTL          time.Duration `group:"Cache" default:"1m" help:"How long a tag's answer is used before upstream is asked again with a HEAD (0: always ask)."`
	TagStaleMax     time.Duration `group:"Cache" default:"24h" help:"How long past --tag-ttl the last answer for a tag is served while upstream fails."`
	FillTimeout     time.Duration `group:"Cache" default:"30m" help:"Longest time one upstream fetch into the cache may take."`

	DefaultRegistry string            `group:"Upstream" default:"docker.io" help:"Registry for requests that name none (dockerd registry-mirrors)."`
	RegistryURL     map[string]string `group:"Upstream" name:"registry-url" placeholder:"NAME=URL" help:"Fetch registry NAME from URL instead, e.g. docker.io=https://mirror.internal or localhost:5000=http://127.0.0.1:5000. Repeatable."`
	CredentialsFile string            `group:"Upstream" type:"path" placeholder:"FILE" help:"Docker config.json with cacheyd's own credentials per registry."`

	LogLevel  string `group:"Logging" default:"info" enum:"debug,info,warn,error" help:"Least severe level logged: debug, info, warn or error."`
	LogFormat string `group:"Logging" default:"text" enum:"text,json" help:"Log format: text or json."`
}

// serve wires and runs cacheyd until ctx ends. listening, if set, is told
// the bound address (tests listen on port 0).
func (s *serveFlags) serve(ctx context.Context, log *slog.Logger, listening func(net.Addr)) error {
	dir, err := s.cacheDir()
	if err != nil {
		return err
	}
	urls, err := registryURLs(s.RegistryURL)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	origin, err := upstream.New(upstream.Config{
		RegistryURLs: urls, CredentialsFile: s.CredentialsFile,
		UserAgent: "cacheyd/" + versionString(), Metrics: m, Logger: log,
	})
	if err != nil {
		return err
	}
	cache, err := tier.New(tier.Config{
		Dir: dir, MemoryBytes: int64(s.MemoryBytes), MemoryMaxObject: int64(s.MemoryMaxObject),
		DiskBytes: int64(s.DiskBytes), TagTTL: s.TagTTL, TagStaleMax: s.TagStaleMax,
		FillTimeout: s.FillTimeout, Metrics: m, Logger: log,
	}, origin)
	if err != nil {
		return err
	}
	defer cache.Close()
	srvCfg := server.Config{DefaultRegistry: s.DefaultRegistry, Name: "cacheyd", Logger: log, Metrics: m, Gatherer: reg}
	if err := srvCfg.Validate(); err != nil {
		return err
	}
	srv := server.New(srvCfg, cache)

	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Listen, err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "version", versionString(), "cache_dir", dir,
		"memory_bytes", int64(s.MemoryBytes), "disk_bytes", int64(s.DiskBytes), "default_registry", s.DefaultRegistry)
	if listening != nil {
		listening(ln.Addr())
	}
	served := make(chan error, 1)
	// Stops when the listener is closed by Shutdown or fails.
	go func() { served <- srv.Serve(ln) }()
	srv.SetReady(true)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", s.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, net.ErrClosed) {
		err = errors.Join(err, serr)
	}
	log.Info("stopped")
	return err
}

// cacheDir is --cache-dir, or cacheyd in the user's cache directory, or in
// the temporary directory when the user has none (a container without HOME).
func (s *serveFlags) cacheDir() (string, error) {
	if s.CacheDir != "" {
		return s.CacheDir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "cacheyd"), nil
}

// registryURLs validates --registry-url and keys it by canonical registry.
func registryURLs(in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for name, u := range in {
		canon, err := oci.NormalizeRegistry(name)
		if err != nil {
			return nil, fmt.Errorf("--registry-url %s: %w", name, err)
		}
		out[canon] = u
	}
	return out, nil
}

// newLogger builds the process logger.
func newLogger(level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
