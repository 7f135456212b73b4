package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/cacheyd/cacheyd/bench"
	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
	"github.com/cacheyd/cacheyd/internal/app"
)

// benchFlags are the benchmark's own flags (package bench), each with its
// CACHEYD_BENCH_* variable. Flags left out take the defaults of the chosen
// profile, Docker Hub-like or --quick; the pointer fields tell "left out"
// from "set to zero".
type benchFlags struct {
	Quick         bool             `env:"CACHEYD_BENCH_QUICK" help:"A run of seconds (CI): a 5 MiB image set, bursts of 1,4,16, 5ms and 20MB/s upstream, pull limit 20. Other flags still apply."`
	Nodes         []int            `env:"CACHEYD_BENCH_NODES" sep:"," help:"Burst sizes: for each, that many nodes pull the image set at once (default 1,4,16,64)."`
	Scenarios     []string         `env:"CACHEYD_BENCH_SCENARIOS" sep:"," enum:"direct,cold,warm,lazy,lazy-direct,lazy-cold,restart,load,soak" default:"direct,cold,warm" help:"What to measure for each burst size: direct (nodes pull from upstream), cold (through an empty cacheyd), warm (through a cacheyd holding the set); lazy is lazy-direct and lazy-cold, nodes that read of each layer only a footer and a few windows, as lazy-pulling snapshotters do (--lazy-footer, --lazy-window, --lazy-windows), straight from upstream and through an empty cacheyd. restart (with --s3 or --s3-versitygw): a cold burst through replicas keeping the set in a bucket, every replica stopped and its disk wiped, a burst through new ones (which must cost upstream nothing: FAIL and exit status 1 otherwise) and a warm burst through those. load (--load-conns clients hitting memory and disk while one blob fills) and soak (--soak-duration of pulls with upstream faults) run once, in-process, after the bursts."`
	LoadConns     int              `env:"CACHEYD_BENCH_LOAD_CONNS" name:"load-conns" default:"1000" help:"Client connections of the load scenario."`
	SoakDuration  time.Duration    `env:"CACHEYD_BENCH_SOAK_DURATION" name:"soak-duration" default:"30s" help:"How long the soak scenario starts new pulls."`
	SoakFaults    float64          `env:"CACHEYD_BENCH_SOAK_FAULT_RATE" name:"soak-fault-rate" default:"0.1" help:"Share of upstream content requests the soak answers with a fault (truncated body, 503, 429, slow, in turn); negative: none."`
	LazyFooter    daemon.ByteSize  `env:"CACHEYD_BENCH_LAZY_FOOTER" name:"lazy-footer" default:"64KiB" help:"Lazy scenarios: the suffix of each layer read first (Range: bytes=-N)."`
	LazyWindow    daemon.ByteSize  `env:"CACHEYD_BENCH_LAZY_WINDOW" name:"lazy-window" default:"256KiB" help:"Lazy scenarios: the size of the table of contents, read just before the footer, and of each file window."`
	LazyWindows   int              `env:"CACHEYD_BENCH_LAZY_WINDOWS" name:"lazy-windows" default:"3" help:"Lazy scenarios: file windows read of each layer, at offsets drawn from its digest."`
	Images        string           `env:"CACHEYD_BENCH_IMAGES" type:"existingfile" placeholder:"FILE" help:"Image set to pull (see bench/README.md for the format). Default: five DaemonSet-like multi-arch images, 165 MiB per node, layers of 4 KiB to 112 MiB."`
	Platform      string           `env:"CACHEYD_BENCH_PLATFORM" default:"linux/amd64" help:"The nodes' platform."`
	Bandwidth     *daemon.ByteSize `env:"CACHEYD_BENCH_BANDWIDTH" placeholder:"BYTES" help:"Upstream bandwidth per connection, in bytes per second, e.g. 40MB (default 40MB; 0: no cap)."`
	Latency       *time.Duration   `env:"CACHEYD_BENCH_LATENCY" placeholder:"DURATION" help:"Upstream latency added to every request (default 50ms; 0: none)."`
	PullLimit     *int             `env:"CACHEYD_BENCH_PULL_LIMIT" placeholder:"N" help:"Upstream pull limit per burst: manifest GETs beyond it are answered 429 as Docker Hub does (default 100, Docker Hub's anonymous limit; 0: none)."`
	WithAlternate bool             `name:"alternate" env:"CACHEYD_BENCH_ALTERNATE" help:"Start a second fake registry holding the whole image set and give it to cacheyd as the upstream's --alternate, as mirror.gcr.io beside Docker Hub: content by digest comes from it, tags are still resolved upstream by HEAD. The report counts its bytes apart from upstream's. Not with --target."`
	S3            string           `env:"CACHEYD_BENCH_S3" name:"s3" placeholder:"ENDPOINT" help:"The restart scenario's S3-compatible store, e.g. http://127.0.0.1:9000 (path-style), holding --s3-bucket; keys from --s3-access-key/--s3-secret-key, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. The run keys its objects under cacheyd-bench-<random>/ and leaves them there. Not with --s3-versitygw."`
	BucketName    string           `env:"CACHEYD_BENCH_S3_BUCKET" name:"s3-bucket" placeholder:"NAME" help:"With --s3: the bucket, which must exist. With --s3-versitygw: the bucket the run makes (default cacheyd-bench)."`
	BucketRegion  string           `env:"CACHEYD_BENCH_S3_REGION" name:"s3-region" placeholder:"REGION" help:"With --s3: the bucket's region (default: asked of the store)."`
	S3AccessKey   string           `env:"CACHEYD_BENCH_S3_ACCESS_KEY" name:"s3-access-key" placeholder:"KEY" help:"With --s3: the access key (default: the standard chain, AWS_ACCESS_KEY_ID...)."`
	S3SecretKey   string           `env:"CACHEYD_BENCH_S3_SECRET_KEY" name:"s3-secret-key" placeholder:"KEY" help:"With --s3: the secret key; prefer its variable to the flag, which other users of the machine can read."`
	S3Versitygw   string           `env:"CACHEYD_BENCH_S3_VERSITYGW" name:"s3-versitygw" type:"existingfile" placeholder:"PATH" help:"The restart scenario's store: start this versitygw (v1.8.0) for the run on a free loopback port over a temporary directory, with a bucket and keys of its own, and stop it by its PID at the end. Not with --s3."`
	Parallel      int              `env:"CACHEYD_BENCH_PARALLEL" default:"3" help:"Blob downloads at once per node (containerd's max_concurrent_downloads)."`
	Resume        int              `env:"CACHEYD_BENCH_RESUME" default:"3" help:"How many times a node resumes a broken download with Range."`
	Timeout       time.Duration    `env:"CACHEYD_BENCH_TIMEOUT" default:"10m" help:"Longest a burst may take; nodes still pulling then fail."`
	Replicas      int              `env:"CACHEYD_BENCH_REPLICAS" name:"replicas" default:"1" placeholder:"N" help:"In-process cacheyd replicas sharing each cold and warm burst, as one cluster (--peers); --balance says how nodes reach them."`
	Balance       string           `env:"CACHEYD_BENCH_BALANCE" enum:"node,connection" default:"node" help:"With --replicas: node (node i keeps to replica i mod N, as the shipped Service's session affinity does) or connection (a round-robin TCP balancer hands each connection to the next replica, copying every byte once more)."`
	Target        string           `env:"CACHEYD_BENCH_TARGET" placeholder:"URL" help:"Measure a running cacheyd at URL (on this machine) instead of one in-process. It must map the fake upstream and allow its CDN, e.g. --registry-url localhost:5000=http://localhost:5000 --allow-registry localhost:5001 with --upstream-addr 127.0.0.1:5000 --upstream-cdn-addr 127.0.0.1:5001."`
	TargetPID     int              `env:"CACHEYD_BENCH_TARGET_PID" name:"target-pid" placeholder:"PID" help:"Process ID of --target, whose peak resident memory and CPU time are reported per burst."`
	Upstream      string           `env:"CACHEYD_BENCH_UPSTREAM_ADDR" name:"upstream-addr" placeholder:"HOST:PORT" help:"Loopback address for the fake upstream (default: a free port)."`
	UpstreamCDN   string           `env:"CACHEYD_BENCH_UPSTREAM_CDN_ADDR" name:"upstream-cdn-addr" placeholder:"HOST:PORT" help:"Loopback address for the fake upstream's CDN, advertised as localhost:PORT (default: a free port)."`
	JSON          bool             `env:"CACHEYD_BENCH_JSON" help:"Print the report as JSON instead of a table."`
	Chart         string           `env:"CACHEYD_BENCH_CHART" placeholder:"FILE" help:"Draw node pull time and upstream bytes against burst size into FILE (.svg or .png)."`
	Progress      bool             `env:"CACHEYD_BENCH_PROGRESS" default:"true" negatable:"" help:"Show a progress bar per burst on standard error, when it is a terminal."`
	Serve         bool             `env:"CACHEYD_BENCH_SERVE_UPSTREAM" name:"serve-upstream" help:"Only run the fake upstream, seeded with the image set: print what it holds and serve until interrupted (for bench/compare.sh)."`
}

// run runs the benchmark until done or until SIGINT or SIGTERM. The
// in-process cacheyd of each burst is started with cacheyd's own wiring
// and its flags s (memory and disk budgets, tag TTL...), on a loopback
// port and a cache directory of its own.
func (b *benchFlags) run(s *daemon.Flags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := b.config(s)
	if err != nil {
		return err
	}
	if b.Serve {
		return bench.ServeUpstream(ctx, cfg, os.Stdout)
	}
	if len(cfg.Scenarios) > 0 {
		rep, err := bench.Run(ctx, cfg, os.Stdout)
		if err != nil {
			return err
		}
		if err := rep.Check(); err != nil {
			return err
		}
	}
	if slices.Contains(b.Scenarios, "load") {
		lc := bench.DefaultLoadConfig()
		lc.Conns, lc.Start, lc.JSON = b.LoadConns, cfg.Start, b.JSON
		if _, err := bench.RunLoad(ctx, lc, os.Stdout); err != nil {
			return err
		}
	}
	if slices.Contains(b.Scenarios, "soak") {
		sc := bench.DefaultSoakConfig()
		sc.Duration, sc.FaultRate, sc.Start, sc.JSON = b.SoakDuration, b.SoakFaults, cfg.Start, b.JSON
		if _, err := bench.RunSoak(ctx, sc, os.Stdout); err != nil {
			return err
		}
	}
	if b.Chart != "" {
		fmt.Fprintln(os.Stderr, "chart written to", b.Chart)
	}
	return nil
}

// config turns the flags into a bench.Config.
func (b *benchFlags) config(s *daemon.Flags) (bench.Config, error) {
	cfg := bench.DefaultConfig()
	if b.Quick {
		cfg = bench.QuickConfig()
	}
	if len(b.Nodes) > 0 {
		cfg.Nodes = b.Nodes
	}
	cfg.Scenarios = nil
	for _, sc := range b.Scenarios {
		switch sc {
		case "load", "soak": // run by RunLoad and RunSoak
		case "lazy":
			cfg.Scenarios = append(cfg.Scenarios, bench.LazyScenarios...)
		default:
			cfg.Scenarios = append(cfg.Scenarios, bench.Scenario(sc))
		}
	}
	if b.LazyFooter < 1 || b.LazyWindow < 1 || b.LazyWindows < 1 {
		return cfg, errors.New("--lazy-footer, --lazy-window and --lazy-windows: want at least 1")
	}
	cfg.Lazy = bench.LazyReads{Footer: int64(b.LazyFooter), Window: int64(b.LazyWindow), Windows: b.LazyWindows}
	if b.Images != "" {
		imgs, err := bench.ReadImages(b.Images)
		if err != nil {
			return cfg, err
		}
		cfg.Images = imgs
	}
	if b.Bandwidth != nil {
		cfg.Bandwidth = int64(*b.Bandwidth)
	}
	if b.Latency != nil {
		cfg.Latency = *b.Latency
	}
	if b.PullLimit != nil {
		cfg.PullLimit = *b.PullLimit
	}
	cfg.Alternate = b.WithAlternate
	cfg.Platform, cfg.Parallel, cfg.Resume, cfg.BurstTimeout = b.Platform, b.Parallel, b.Resume, b.Timeout
	cfg.Target, cfg.TargetPID, cfg.UpstreamAddr, cfg.UpstreamCDNAddr = b.Target, b.TargetPID, b.Upstream, b.UpstreamCDN
	cfg.Replicas, cfg.Balance = b.Replicas, bench.Balance(b.Balance)
	cfg.Bucket = bench.Bucket{Endpoint: b.S3, Name: b.BucketName, Region: b.BucketRegion,
		AccessKey: b.S3AccessKey, SecretKey: b.S3SecretKey, Versitygw: b.S3Versitygw}
	cfg.JSON, cfg.Chart = b.JSON, b.Chart
	if b.Progress && isTerminal(os.Stderr) {
		cfg.Progress = os.Stderr
	}
	cfg.Start = starter(s)
	return cfg, nil
}

// isTerminal reports whether f is a terminal, where a progress bar that
// redraws itself belongs (a log file would collect every redraw).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// starter starts cacheyd in-process for a burst, exactly as "cacheyd
// serve" would with the flags s, except where it listens, its cache
// directory, the one upstream it maps, that upstream's CDN, which it
// allows, the upstream's alternate with --alternate, and the restart
// scenario's bucket (path-style, under a prefix of the run's). It logs warnings and errors
// only (everything at --log-level debug), so the report stays readable.
func starter(s *daemon.Flags) bench.Starter {
	return func(ctx context.Context, c bench.CacheydConfig) (string, func() error, error) {
		flags := *s
		flags.Listen, flags.CacheDir = "127.0.0.1:0", c.Dir
		flags.RegistryURL = map[string]string{c.Registry: c.URL}
		flags.AllowRegistry = append(slices.Clone(s.AllowRegistry), c.CDN)
		if c.Alternate != "" {
			flags.Alternate = []string{c.Registry + "=" + c.Alternate}
		}
		if c.Listener != nil {
			flags.Listen = c.Listener.Addr().String()
		}
		if len(c.Peers) > 0 {
			flags.Peers, flags.Advertise, flags.ClusterSecret = c.Peers, flags.Listen, c.Secret
		}
		if st := c.Store; st != nil {
			flags.S3Bucket, flags.S3Endpoint, flags.S3Region, flags.S3Prefix = st.Bucket, st.Endpoint, st.Region, st.Prefix
			flags.S3PathStyle = true
		}
		level := "warn"
		if s.LogLevel == "debug" {
			level = "debug"
		}
		log, access := daemon.NewLogger(level, s.LogFormat, os.Stderr)
		cfg, err := flags.Config()
		if err != nil {
			return "", nil, err
		}
		cfg.Server.AccessLog = access
		cfg.Listener = c.Listener
		if st := c.Store; st != nil { // keys are no flag of cacheyd's: the standard chain's
			cfg.Store.AccessKey, cfg.Store.SecretKey = st.AccessKey, st.SecretKey
		}
		return app.Start(ctx, cfg, log)
	}
}
