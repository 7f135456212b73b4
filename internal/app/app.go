// Package app is cacheyd's composition root: it wires the sources (the
// upstream client as the registry; the cluster's owner and parent, when
// there are peers or a parent) into the policy over them (package
// sources), the cache behind it over its tiers (memory in front of disk,
// and the keepers told of what the disk commits) and the server into one
// running cacheyd, listens (and on a second address for the replicas, when
// asked), and shuts it down. A new source is one more value of sources.Set
// here, and a new tier one more value of cache.Tiers (openTiers). It
// gives the server and the cluster what they must agree on: the cluster
// secret, one random instance id per start (loops of parents), and the
// peers' idle allowance, which follows from the fill's idle timeout and
// upstream's header timeout. The commands (cmd/cacheyd and
// cmd/cacheyd-bench, whose flags cmd/internal/daemon turns into a Config),
// the benchmark harness and the tests all start cacheyd through Run, so
// there is one wiring and one set of defaults (Defaults).
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/server"
	"github.com/cacheyd/cacheyd/sources"
	"github.com/cacheyd/cacheyd/tier/disk"
	"github.com/cacheyd/cacheyd/tier/memory"
	"github.com/cacheyd/cacheyd/tier/s3"
	"github.com/cacheyd/cacheyd/upstream"
)

// Config is one cacheyd: where it listens and how long it takes to stop,
// and the configuration of each part. Metrics, Logger and Gatherer of the
// parts are set by Run.
type Config struct {
	// Listen is the address of the registry API, /metrics and health.
	Listen string
	// Listener, when set, is served instead of listening on Listen, and
	// closed by Run: replicas of a test or benchmark know each other's
	// addresses before any of them starts. Nil listens on Listen.
	Listener net.Listener
	// PeerListen, when set, is a second address serving the same API, for
	// the members of the cluster, with Server.PeerTLS: the members' port
	// (Cluster.Advertise's). Empty serves members on Listen.
	PeerListen string
	// PeerListener, when set, is served instead of listening on
	// PeerListen, and closed by Run.
	PeerListener net.Listener
	// ShutdownTimeout is how long responses in flight may take once a
	// shutdown begins.
	ShutdownTimeout time.Duration
	Upstream        upstream.Config
	// Cluster makes this cacheyd one replica of several, or the child of
	// a parent; its zero value is a cacheyd alone. Its Token defaults to
	// the first of Server.ClientTokens; its Secret is the server's
	// ClusterSecret too (Run copies it), its Instance, Listen and Heard
	// are set by Run.
	Cluster cluster.Config
	// Alternates are registries that serve other registries' content by
	// digest, in the order asked (a public mirror, the operator's own
	// registry), each fetched with Upstream's configuration (see
	// upstream.NewAlternate). Nil has none.
	Alternates []Alternate
	// AlternateMode is where the alternates stand beside the registry.
	// Empty means sources.Prefer.
	AlternateMode sources.AlternateMode
	// BudgetReserve is, in sources.Fallback mode, the pulls of a
	// registry's stated budget kept for what no alternate holds (see
	// sources.Set.Reserve). Zero keeps none.
	BudgetReserve int64
	// AlternateTags lets the alternates resolve a tag while its registry
	// fails and nothing is cached (see sources.Set.AlternateTags). False
	// resolves every tag at its registry only.
	AlternateTags bool
	// Cache configures the cache, and the memory and disk tiers Run opens
	// for it (Dir, MemoryBytes, MemoryMaxObject, DiskBytes).
	Cache cache.Config
	// Keepers are told of every verified public object once the disk tier
	// has committed it (cache.Keeper), after the tiers Run opens itself.
	// Nil means none.
	Keepers []cache.Keeper
	// Store is the object store behind the disk tier (tier/s3): a bucket
	// that keeps verified public content for every replica, restart and
	// cluster that names it, asked for content by digest before the
	// parent and the registry. Its Bucket empty means none; Metrics,
	// Logger and Read are set by Run.
	Store  s3.Config
	Server server.Config
}

// Defaults is the configuration of cacheyd started with no flags, but for
// the cache directory (Cache.Dir), which is the caller's: port 30123, 256 MiB
// of memory for objects up to 1 MiB, 20 GiB of disk, a one-minute tag TTL
// with a day of stale answers, 5 s for upstream to answer, 256 fills at
// once (64 per registry; 10 s without progress is a stall), blobs over
// 16 MiB fetched as 16 MiB ranges four at a time, 64 MiB for manifests
// and listings read whole (16 MiB per registry), Docker Hub for requests
// that name no registry, alternates (when named) before the registry, and
// a bucket (when named) keyed under cacheyd/, skipped after 5 s.
func Defaults() Config {
	return Config{
		Listen:          ":30123",
		ShutdownTimeout: 30 * time.Second,
		Upstream:        upstream.Config{ResponseHeaderTimeout: 5 * time.Second, UserAgent: "cacheyd"},
		Cache: cache.Config{
			MemoryBytes: 256 << 20, MemoryMaxObject: 1 << 20, DiskBytes: 20 << 30,
			TagTTL: time.Minute, TagStaleMax: 24 * time.Hour, FillTimeout: 30 * time.Minute,
			AnswerTimeout: 5 * time.Second, MaxFills: 256, MaxFillsPerRegistry: 64, FillStall: 10 * time.Second,
			FillChunk: 16 << 20, FillParallel: 4, ReadMemory: 64 << 20,
		},
		Server:        server.Config{DefaultRegistry: "docker.io", Name: "cacheyd"},
		AlternateMode: sources.Prefer,
		Store:         s3.Config{Prefix: "cacheyd/", Timeout: s3.DefaultTimeout},
	}
}

// Run starts cacheyd with cfg and serves until ctx ends, then shuts down
// gracefully: readiness turns false, responses in flight get
// cfg.ShutdownTimeout, fills are aborted and the disk records a clean stop.
// listening, if set, is told the bound address once cacheyd serves (tests
// listen on port 0).
func Run(ctx context.Context, cfg Config, log *slog.Logger, listening func(net.Addr)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	cfg.Upstream.Metrics, cfg.Upstream.Logger = m, log
	cfg.Cache.Metrics, cfg.Cache.Logger = m, log
	cfg.Server.Metrics, cfg.Server.Logger, cfg.Server.Gatherer = m, log, reg
	// One instance id for the server (which refuses a request that came
	// back to it) and the cluster (which names this cacheyd on the way).
	instance := newInstance()
	cfg.Server.Instance, cfg.Cluster.Instance = instance, instance
	// The server proves its answers to the members with the secret the
	// cluster proves its requests with.
	cfg.Server.ClusterSecret = cfg.Cluster.Secret
	if err := cfg.Server.Validate(); err != nil {
		return err
	}
	up, err := upstream.New(cfg.Upstream)
	if err != nil {
		return err
	}
	// Every source this cacheyd has, in its place: the policy decides which
	// a request may come from, in what order.
	set := sources.Set{Registry: up, Metrics: m, Logger: log, AlternateMode: cfg.AlternateMode,
		Reserve: cfg.BudgetReserve, Remaining: remaining(up), AlternateTags: cfg.AlternateTags}
	if set.Alternates, err = alternates(cfg); err != nil {
		return err
	}
	// What each registry last said of the budget, read here or heard from
	// the members asked; what this replica read, stated to them.
	heard := &heardBudgets{}
	cfg.Server.Status.Budgets = func() []server.PullBudget { return pullBudgets(up.Budgets(), heard) }
	cfg.Server.PeerBudget = peerBudget(up)
	closeCluster := func() {}
	if cfg.Cluster.Enabled() {
		cfg.Cluster.Metrics, cfg.Cluster.Logger, cfg.Cluster.Heard = m, log, heard.hear
		if cfg.Cluster.BodyIdle == 0 {
			cfg.Cluster.BodyIdle = peerBodyIdle(cfg)
		}
		if cfg.Cluster.Listen == "" {
			cfg.Cluster.Listen = cfg.Listen
		}
		if cfg.Cluster.Token == "" && len(cfg.Server.ClientTokens) > 0 {
			cfg.Cluster.Token = cfg.Server.ClientTokens[0]
		}
		co, err := cluster.New(cfg.Cluster)
		if err != nil {
			return err
		}
		set.Owner, set.Parent, closeCluster = co.Owner(), co.Parent(), co.Close
		cfg.Server.Status.Member, cfg.Server.Status.Parent = cfg.Cluster.Advertise, cfg.Cluster.Parent
	}
	cfg.Store.Metrics, cfg.Store.Logger = m, log
	tiers, store, closeTiers, err := openTiers(cfg.Cache, cfg.Keepers, cfg.Store, cfg.ShutdownTimeout)
	if err != nil {
		closeCluster()
		return err
	}
	if store != nil {
		set.Store = store
		cfg.Server.Status.Bucket = bucketName(cfg.Store)
	}
	c, err := cache.New(cfg.Cache, routes{sources.New(set)}, tiers)
	if err != nil {
		err = errors.Join(err, closeTiers())
		closeCluster()
		return err
	}
	// The cache first: its fills may still read from peers, and write into
	// the tiers.
	closeAll := func() error {
		err := c.Close()
		err = errors.Join(err, closeTiers())
		closeCluster()
		return err
	}
	srv := server.New(cfg.Server, c)
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return errors.Join(fmt.Errorf("listen %s: %w", cfg.Listen, err), closeAll())
		}
	}
	pln := cfg.PeerListener
	if pln == nil && cfg.PeerListen != "" {
		if pln, err = net.Listen("tcp", cfg.PeerListen); err != nil {
			ln.Close()
			return errors.Join(fmt.Errorf("listen %s: %w", cfg.PeerListen, err), closeAll())
		}
	}
	peerAddr := ""
	if pln != nil {
		peerAddr = pln.Addr().String()
	}
	log.Info("listening", "addr", ln.Addr().String(), "peer_addr", peerAddr, "peer_tls", cfg.Server.PeerTLS != nil,
		"version", cfg.Server.Status.Version, "cache_dir", cfg.Cache.Dir,
		"memory_bytes", cfg.Cache.MemoryBytes, "disk_bytes", cfg.Cache.DiskBytes, "default_registry", cfg.Server.DefaultRegistry,
		"tls", cfg.Server.TLS != nil, "client_token", len(cfg.Server.ClientTokens) > 0,
		servedRegistries(cfg.Server.Registries), registryURLs(cfg.Upstream.RegistryURLs),
		"peers", cfg.Cluster.Peers, "advertise", cfg.Cluster.Advertise, "parent", cfg.Cluster.Parent,
		"cluster_secret", cfg.Cluster.Secret != "", "instance", instance)
	if listening != nil {
		listening(ln.Addr())
	}
	serving := 1
	served := make(chan error, 2)
	// Stops when the listener is closed by Shutdown or fails.
	go func() { served <- srv.Serve(ln) }()
	if pln != nil {
		serving++
		// Stops when the listener is closed by Shutdown or fails.
		go func() { served <- srv.ServePeers(pln) }()
	}
	srv.SetReady(true)

	var failed error
	select {
	case failed = <-served:
		serving--
		failed = fmt.Errorf("serve: %w", failed)
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = errors.Join(failed, srv.Shutdown(sctx))
	for range serving {
		if serr := <-served; serr != nil && !errors.Is(serr, net.ErrClosed) {
			err = errors.Join(err, serr)
		}
	}
	err = errors.Join(err, closeAll())
	log.Info("stopped")
	return err
}

// openTiers opens the cache's tiers as cc describes them: memory (when
// cc.MemoryBytes is above zero) in front of disk in cc.Dir, and keepers
// told of what the disk commits, the object store sc names last (also
// returned, as a source; nil for none). A new tier is opened here and
// takes its place in the Tiers. closeTiers closes what openTiers opened,
// once the cache is closed: memory; the store, once its queued uploads
// had up to flush to finish; then disk, which records a clean stop.
func openTiers(cc cache.Config, keepers []cache.Keeper, sc s3.Config, flush time.Duration) (tiers cache.Tiers, store *s3.Store, closeTiers func() error, err error) {
	mem, err := memory.New(memory.Config{Bytes: cc.MemoryBytes, MaxObject: cc.MemoryMaxObject, Metrics: cc.Metrics})
	if err != nil {
		return cache.Tiers{}, nil, nil, err
	}
	d, err := disk.Open(disk.Config{Dir: cc.Dir, Budget: cc.DiskBytes, Metrics: cc.Metrics, Logger: cc.Logger})
	if err != nil {
		mem.Close()
		return cache.Tiers{}, nil, nil, err
	}
	if store, err = openStore(sc, d); err != nil {
		mem.Close()
		return cache.Tiers{}, nil, nil, errors.Join(err, d.Close())
	}
	tiers = cache.Tiers{Disk: cache.DiskOf(d), Keepers: keepers}
	if store != nil {
		tiers.Keepers = append(slices.Clip(keepers), store)
	}
	if mem != nil { // nil: disabled
		tiers.Memory = mem
	}
	return tiers, store, func() error {
		mem.Close()
		if store != nil {
			flushStore(store, flush, sc.Logger)
			store.Close()
		}
		return d.Close()
	}, nil
}

// routes is the policy as the cache consumes it: a one-off request goes
// through Policy.Fetch, and work the cache keys through a route decided
// once (cache.Router).
type routes struct{ *sources.Policy }

var _ cache.Router = routes{}

// Route decides the route of the work for req.
func (r routes) Route(req *oci.Request) cache.Route { return r.Policy.Route(req) }

// newInstance returns a random instance id: 16 hex digits, new at every
// start, by which this cacheyd knows a request that came back to it.
func newInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// peerBodyIdle is how long a body from a peer or the parent may send
// nothing before it is abandoned as stalled: long enough for that cacheyd
// to notice its own upstream stalling (its fill's idle timeout), resume it
// (upstream's header timeout) and have it stall once more, so that a
// member relaying a registry that stalls is not the one blamed.
func peerBodyIdle(cfg Config) time.Duration {
	idle, header := cfg.Cache.FillIdleTimeout, cfg.Upstream.ResponseHeaderTimeout
	if idle <= 0 {
		idle = 30 * time.Second // cache's default
	}
	if header <= 0 {
		header = upstream.DefaultResponseHeaderTimeout
	}
	return 2*idle + header
}

// Start runs cacheyd with cfg on a goroutine of its own and returns once it
// serves: its base URL ("http://host:port", https with TLS) and a stop that shuts it down as
// Run does when its context ends, waits, and returns Run's error; stop is
// safe to call more than once. A cacheyd that cannot start is an error.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (string, func() error, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	// Stops when stop cancels ctx.
	go func() { done <- Run(ctx, cfg, log, func(a net.Addr) { addr <- a }) }()
	select {
	case a := <-addr:
		scheme := "http://"
		if cfg.Server.TLS != nil {
			scheme = "https://"
		}
		var once sync.Once
		var err error
		return scheme + a.String(), func() error {
			once.Do(func() { cancel(); err = <-done })
			return err
		}, nil
	case err := <-done:
		cancel()
		return "", nil, err
	}
}
