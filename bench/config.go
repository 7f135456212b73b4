package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/cacheyd/cacheyd/internal/puller"
)

// Scenario is how the nodes of a burst reach the images.
type Scenario string

// The scenarios, in the order a run measures them for each burst size.
const (
	// Direct: nodes pull from the upstream itself, as without cacheyd.
	Direct Scenario = "direct"
	// Cold: nodes pull through a cacheyd that holds none of the images.
	Cold Scenario = "cold"
	// Warm: nodes pull through a cacheyd that holds all of them (the one
	// the cold burst filled, or one filled by a single untimed pull).
	Warm Scenario = "warm"
	// LazyDirect: nodes pull the way lazy-pulling snapshotters do (see
	// LazyReads), straight from the upstream.
	LazyDirect Scenario = "lazy-direct"
	// LazyCold: the same reads through a cacheyd that holds none of the
	// images.
	LazyCold Scenario = "lazy-cold"
	// Restart: the replicas keep the set in a bucket (Config.Bucket); a
	// cold burst, then every replica stopped (its uploads flushed), its
	// disk wiped and a new one started, a burst through the new ones, and
	// a warm burst through them to compare with (see restart.go).
	Restart Scenario = "restart"
)

// Balance is how nodes reach the replicas of a cluster.
type Balance string

const (
	// BalanceNode: node i talks to replica i mod N for its whole pull, as
	// through the shipped Service (session affinity by client address),
	// which reaches the pods through the kernel's NAT at no cost.
	BalanceNode Balance = "node"
	// BalanceConnection: a TCP balancer in front hands each connection to
	// the next replica, as a Service without session affinity; the
	// balancer copies every byte once more, in this process.
	BalanceConnection Balance = "connection"
)

// Scenarios lists the scenarios of a default run, in the order a run
// measures them.
var Scenarios = []Scenario{Direct, Cold, Warm}

// LazyScenarios are the lazy-pulling pair, measured after Scenarios.
var LazyScenarios = []Scenario{LazyDirect, LazyCold}

// allScenarios is every scenario in the order a run measures them.
var allScenarios = append(slices.Clone(Scenarios), append(slices.Clone(LazyScenarios), Restart)...)

// Config configures a run. The zero value of each field is documented; it
// is never "Docker Hub-like": DefaultConfig and QuickConfig give those
// numbers.
type Config struct {
	// Nodes is the series of burst sizes: for each, that many nodes pull
	// the whole image set at once. Nil means 1, 4, 16, 64.
	Nodes []int
	// Scenarios are measured for every burst size, in the order of
	// Scenarios, then LazyScenarios, then Restart, whatever the order
	// here. Nil means Scenarios.
	Scenarios []Scenario
	// Images is the image set every node pulls. Nil means DefaultImages.
	Images []Image
	// Platform is the nodes' platform ("os/arch" or "os/arch/variant"),
	// which they pick from each index. Empty means linux/amd64.
	Platform string

	// Bandwidth caps each upstream response body, and so each upstream
	// connection (HTTP/1.1 answers one request at a time), in bytes per
	// second. Zero means no cap.
	Bandwidth int64
	// Latency is added before every upstream answer (token, HEAD, manifest,
	// the blob redirect and the CDN's blob alike). Zero means none.
	Latency time.Duration
	// PullLimit is the upstream's pull rate limit: manifest GETs beyond it
	// in one burst are answered 429 as Docker Hub does. Every burst starts
	// a new window, as if it were the first pull in six hours from the
	// cluster's one egress address. Zero means unlimited.
	PullLimit int
	// Alternate starts a second fake registry beside the upstream holding
	// the whole image set, and the in-process cacheyd with it as the
	// upstream's alternate (--alternate REGISTRY=URL), as mirror.gcr.io
	// stands beside Docker Hub: content by digest comes from it, tags are
	// still resolved upstream. Its bytes are counted apart from upstream's.
	// Not with Target.
	Alternate bool

	// Parallel is how many blobs one node downloads at once. Zero means 3,
	// containerd's default max_concurrent_downloads.
	Parallel int
	// Resume is how many times a node continues one broken blob download
	// with "Range: bytes=N-". Zero means a broken download fails the image.
	Resume int
	// Lazy is what the nodes of the lazy scenarios read of each layer.
	Lazy LazyReads
	// BurstTimeout bounds one burst; nodes still pulling then fail. Zero
	// means 10 minutes.
	BurstTimeout time.Duration

	// Replicas is how many in-process cacheyd replicas share each cold
	// and warm burst, as one cluster (--peers), reached as Balance says.
	// Zero or one means one cacheyd. Not with Target.
	Replicas int
	// Balance is how the nodes of a burst reach the replicas. Empty means
	// BalanceNode.
	Balance Balance
	// Bucket is the S3-compatible store the replicas of the restart
	// scenario keep the set in; the other scenarios never use it.
	// Required with Restart. Not with Target.
	Bucket Bucket

	// Target is the base URL of a running cacheyd to measure instead of
	// one started in-process ("http://127.0.0.1:30123"). It must map the
	// fake upstream's registry name to its URL and allow its CDN, for
	// example --registry-url localhost:5000=http://localhost:5000
	// --allow-registry localhost:5001 with UpstreamAddr 127.0.0.1:5000 and
	// UpstreamCDNAddr 127.0.0.1:5001. Its cache cannot be wiped from here, so
	// every cold burst is made cold by seeding new content under new tags.
	// Empty means in-process.
	Target string
	// TargetPID is the process ID of Target, whose peak resident memory
	// and CPU time are measured during every burst through it (Linux
	// /proc). Zero measures nothing.
	TargetPID int
	// UpstreamAddr is where the fake upstream's registry host listens, a
	// loopback host:port. Empty means a free port on 127.0.0.1.
	UpstreamAddr string
	// UpstreamCDNAddr is where the fake upstream's CDN listens, likewise;
	// it is advertised as localhost:<port>. Empty means a free port.
	UpstreamCDNAddr string
	// Start starts the in-process cacheyd of each cold burst. Nil means
	// the harness's own wiring of upstream, tier and server with their
	// defaults.
	Start Starter
	// Dir holds the in-process caches, one subdirectory per cold burst,
	// each removed when its burst size is done. Empty means a temporary
	// directory, removed at the end.
	Dir string

	// Progress receives a progress bar per burst. Nil shows none.
	Progress io.Writer
	// JSON makes Run write the report as JSON rather than as a table.
	JSON bool
	// Chart, when set, is a file (.svg or .png) that Run draws node pull
	// time and upstream bytes against burst size in.
	Chart string
}

// Starter starts a cacheyd for a burst and returns its base URL and a
// function that stops it, waiting until it has.
type Starter func(ctx context.Context, c CacheydConfig) (base string, stop func() error, err error)

// CacheydConfig is what a Starter must set up.
type CacheydConfig struct {
	// Dir is the cache directory, empty and for this cacheyd alone.
	Dir string
	// Registry is the registry name nodes ask for with ?ns=
	// ("localhost:<port>"); URL is where it is fetched from.
	Registry, URL string
	// CDN is the host:port ("localhost:<port>") blob GETs are redirected
	// to, which cacheyd must allow (--allow-registry): it is on loopback.
	CDN string
	// Alternate is the base URL of a registry holding Registry's content,
	// to name as Registry's alternate (--alternate Registry=Alternate); on
	// loopback, which cacheyd trusts for an alternate's own fetches. Empty
	// means none.
	Alternate string
	// Listener, when set, is where this cacheyd serves: one replica of a
	// cluster, whose members know each other's addresses before any of
	// them starts. Nil means a free loopback port of its own.
	Listener net.Listener
	// Peers lists every replica of the cluster as host:port, Listener's
	// address among them (--peers, --advertise); nil means a cacheyd alone.
	Peers []string
	// Secret is the cluster secret the replicas share (--cluster-secret),
	// with Peers; empty without.
	Secret string
	// Store is the bucket this cacheyd keeps verified content in and
	// reads it from on a miss (--s3-bucket and its flags, path-style);
	// nil means none.
	Store *Store
}

// DefaultNodes is the burst series of a default run.
var DefaultNodes = []int{1, 4, 16, 64}

// Defaults that resemble Docker Hub seen from a node in a cloud region.
const (
	// DefaultBandwidth per connection: Docker Hub serves blobs from a CDN,
	// which gives one HTTP/1.1 connection from a cloud node tens of MB/s;
	// with containerd's 3 downloads at once a node pulls at ~120 MB/s.
	DefaultBandwidth = 40_000_000
	// DefaultLatency per request: registry-1.docker.io and its token and
	// blob hosts answer a cloud node in roughly 30-100 ms.
	DefaultLatency = 50 * time.Millisecond
	// DefaultPullLimit is Docker Hub's anonymous limit: 100 pulls per six
	// hours per address, and a cluster's nodes usually share one.
	DefaultPullLimit = 100
	// DefaultResume is how often a node resumes one broken download.
	DefaultResume = 3
)

// DefaultConfig is the run of "cacheyd-bench" with no flags: the default
// image set on a Docker Hub-like upstream, bursts of 1, 4, 16 and 64 nodes.
func DefaultConfig() Config {
	return Config{
		Nodes: DefaultNodes, Scenarios: Scenarios, Images: DefaultImages(), Platform: "linux/amd64",
		Bandwidth: DefaultBandwidth, Latency: DefaultLatency, PullLimit: DefaultPullLimit,
		Parallel: 3, Resume: DefaultResume,
	}
}

// QuickConfig is a run of seconds for CI ("cacheyd-bench --quick"): the
// quick image set, bursts of 1, 4 and 16 nodes, 5 ms and 20 MB/s upstream,
// and a pull limit of 20 that the direct burst of 16 exceeds.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Nodes, c.Images = []int{1, 4, 16}, QuickImages()
	c.Bandwidth, c.Latency, c.PullLimit = 20_000_000, 5*time.Millisecond, 20
	return c
}

const defaultBurstTimeout = 10 * time.Minute

// withDefaults fills the zero values that have a default and checks the
// rest.
func (c Config) withDefaults() (Config, error) {
	if c.Nodes == nil {
		c.Nodes = DefaultNodes
	}
	if c.Scenarios == nil {
		c.Scenarios = Scenarios
	}
	if c.Images == nil {
		c.Images = DefaultImages()
	}
	if c.Platform == "" {
		c.Platform = "linux/amd64"
	}
	if c.Parallel == 0 {
		c.Parallel = 3
	}
	if c.BurstTimeout == 0 {
		c.BurstTimeout = defaultBurstTimeout
	}
	if c.Start == nil {
		c.Start = startCacheyd
	}
	var ordered []Scenario
	for _, s := range allScenarios {
		if slices.Contains(c.Scenarios, s) {
			ordered = append(ordered, s)
		}
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(allScenarios, s) {
			return c, fmt.Errorf("bench: unknown scenario %q (want direct, cold, warm, lazy-direct, lazy-cold or restart)", s)
		}
	}
	c.Lazy = c.Lazy.withDefaults()
	c.Scenarios = ordered
	switch {
	case len(c.Nodes) == 0:
		return c, errors.New("bench: no burst sizes")
	case len(c.Scenarios) == 0:
		return c, errors.New("bench: no scenarios")
	case c.Bandwidth < 0 || c.Latency < 0 || c.PullLimit < 0 || c.Parallel < 0 || c.Resume < 0 || c.BurstTimeout < 0 || c.Replicas < 0:
		return c, errors.New("bench: bandwidth, latency, pull limit, parallel, resume, burst timeout and replicas must not be negative")
	case c.Replicas > 64:
		return c, fmt.Errorf("bench: %d replicas: want at most 64", c.Replicas)
	case c.Balance != "" && c.Balance != BalanceNode && c.Balance != BalanceConnection:
		return c, fmt.Errorf("bench: balance %q: want node or connection", c.Balance)
	case c.Replicas > 1 && c.Target != "":
		return c, errors.New("bench: replicas are started in-process; not with a target")
	case c.Alternate && c.Target != "":
		return c, errors.New("bench: the alternate is named to an in-process cacheyd; not with a target")
	case slices.Contains(c.Scenarios, Restart) && c.Target != "":
		return c, errors.New("bench: the restart scenario restarts in-process replicas; not with a target")
	case slices.Contains(c.Scenarios, Restart) && c.Bucket.Endpoint == "" && c.Bucket.Versitygw == "":
		return c, errors.New("bench: the restart scenario needs a bucket: an S3 endpoint or a versitygw to start")
	case c.Bucket.Endpoint != "" && c.Bucket.Versitygw != "":
		return c, errors.New("bench: a bucket at an endpoint or a versitygw started for the run, not both")
	case c.Lazy.Footer < 0 || c.Lazy.Window < 0 || c.Lazy.Windows < 0:
		return c, errors.New("bench: lazy footer, window and windows must not be negative")
	}
	for _, n := range c.Nodes {
		if n < 1 || n > 4096 {
			return c, fmt.Errorf("bench: burst size %d: want 1 to 4096 nodes", n)
		}
	}
	if _, err := puller.ParsePlatform(c.Platform); err != nil {
		return c, fmt.Errorf("bench: %w", err)
	}
	if err := validateImages(c.Images); err != nil {
		return c, fmt.Errorf("bench: %w", err)
	}
	if err := c.Bucket.check(); err != nil {
		return c, err
	}
	if c.Target != "" {
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return c, fmt.Errorf("bench: target %q: want a base URL such as http://127.0.0.1:30123", c.Target)
		}
		if !loopback(u.Hostname()) {
			return c, fmt.Errorf("bench: target %q: only loopback addresses are measured", c.Target)
		}
		c.Target = u.Scheme + "://" + u.Host
	}
	return c, nil
}

// loopback reports whether host is localhost or a loopback IP.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
