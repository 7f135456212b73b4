package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/server"
	"github.com/cacheyd/cacheyd/sources"
	"github.com/cacheyd/cacheyd/tier/s3"
	"github.com/cacheyd/cacheyd/upstream"
)

// The seams, checked at compile time: the consumer of each declares it.
var (
	_ cache.Origin    = (*upstream.Client)(nil)
	_ sources.Fetcher = (*upstream.Client)(nil)
	_ server.Cache    = (*cache.Cache)(nil)
)

// Flags holds every flag of cacheyd. Defaults make a flag-free start
// useful: port 30123, a cache directory in the user's cache folder, 256 MiB
// of memory, 64 MiB for what is read whole, and 20 GiB of disk. Embedded
// in a kong command line (`embed:""`) with kong.DefaultEnvars("CACHEYD"),
// each has its CACHEYD_* variable.
type Flags struct {
	Listen          string        `group:"Server" default:":30123" help:"Address to serve the registry API, /metrics and health on."`
	ShutdownTimeout time.Duration `group:"Server" default:"30s" help:"On SIGTERM, how long responses in flight may take to finish."`
	MaxConns        int           `group:"Server" name:"max-conns" placeholder:"N" help:"Connections served at once; more are answered 503 (health probes as usual) and closed (0: 16384)."`
	MaxConnsPerIP   int           `group:"Server" name:"max-conns-per-ip" placeholder:"N" help:"Connections from one client address (0: unlimited; nodes behind source NAT share one)."`
	ReadTimeout     time.Duration `group:"Server" name:"read-timeout" help:"Longest time to receive one request, headers included (0: 30s)."`
	WriteTimeout    time.Duration `group:"Server" name:"write-timeout" help:"Longest time a response may make no progress before the client is dropped (0: 60s)."`
	IdleTimeout     time.Duration `group:"Server" name:"idle-timeout" help:"How long a keep-alive connection may wait for its next request (0: 120s)."`

	CacheDir        string        `group:"Cache" placeholder:"DIR" help:"Disk tier directory (default: cacheyd in the user cache directory, e.g. ~/.cache/cacheyd). Safe to wipe while stopped."`
	MemoryBytes     ByteSize      `group:"Cache" default:"256MiB" help:"Memory tier budget in bytes (0 disables it)."`
	MemoryMaxObject ByteSize      `group:"Cache" default:"1MiB" help:"Largest object kept in memory, in bytes."`
	DiskBytes       ByteSize      `group:"Cache" default:"20GiB" help:"Disk tier budget in bytes; least recently used content is evicted beyond it (0: unlimited)."`
	TagTTL          time.Duration `group:"Cache" default:"1m" help:"How long a tag's answer (and a tag list's or referrers') is used before upstream is asked again (0: always ask)."`
	TagStaleMax     time.Duration `group:"Cache" default:"24h" help:"How long past --tag-ttl the last answer for a tag, tag list or referrers is served while upstream fails."`
	FillTimeout     time.Duration `group:"Cache" default:"30m" help:"Longest time one upstream fetch into the cache may take."`
	MaxFills        int           `group:"Cache" name:"max-fills" default:"256" placeholder:"N" help:"Upstream fetches into the cache at once; more wait for a slot (each holds a 128 KiB buffer and a connection)."`
	MaxFillsPerReg  int           `group:"Cache" name:"max-fills-per-registry" default:"64" placeholder:"N" help:"Upstream fetches into the cache from one registry at once."`
	FillStall       time.Duration `group:"Cache" name:"fill-stall" default:"10s" help:"A fill that receives less than 64 KiB in this long makes no progress: it gives its slot up at once when nobody reads it, or when a fill of another registry waits for one."`
	FillChunk       ByteSize      `group:"Cache" name:"fill-chunk" default:"16MiB" help:"A blob larger than this is fetched as ranges of this size, several at once, the ones readers wait for first."`
	FillParallel    int           `group:"Cache" name:"fill-parallel" default:"4" placeholder:"N" help:"Upstream requests one fill makes at once, in order; up to half as many more fetch at once what a reader asks for that none of them is heading for (1: every object as one stream)."`
	ReadMemory      ByteSize      `group:"Cache" name:"read-memory" default:"64MiB" help:"Memory for manifests and listings read whole at once (a tag whose registry names no digest, tag lists, referrers) and for copies into the memory tier, claimed as bytes arrive; one registry may hold a quarter. A read that finds no room is answered 503 (0: 64MiB)."`

	DefaultRegistry string            `group:"Upstream" default:"docker.io" help:"Registry for requests that name none (dockerd registry-mirrors)."`
	RegistryURL     map[string]string `group:"Upstream" name:"registry-url" placeholder:"NAME=URL" help:"Fetch registry NAME from URL instead, e.g. docker.io=https://mirror.internal or localhost:5000=http://127.0.0.1:5000. Trusted as exactly that URL (host and port) for exactly NAME. Repeatable."`
	Alternate       []string          `group:"Upstream" name:"alternate" placeholder:"REGISTRY=URL" help:"Fetch REGISTRY's content by digest (blobs, manifests by digest) from URL first, e.g. docker.io=https://mirror.gcr.io or docker.io=https://public.ecr.aws/docker (a path goes before the repository); every byte is verified against its digest, tags are still resolved at REGISTRY, and anything fetched with a client's credentials never goes there. Asked in order; any failure moves on to the next, then to REGISTRY. Repeatable."`
	AlternateMode   string            `group:"Upstream" name:"alternate-mode" default:"prefer" enum:"prefer,fallback" help:"Where --alternate stands: prefer asks the alternates first and the registry only when none has the content, so that the registry's pull limit is spent only on what no alternate holds; fallback asks the registry first and the alternates only once it answers 429, fails or is unreachable, or its pull budget is below --budget-reserve (the registry's own answer stands when no alternate has the content)."`
	BudgetReserve   int64             `group:"Upstream" name:"budget-reserve" default:"0" placeholder:"PULLS" help:"With --alternate-mode fallback: once a registry states fewer pulls left than this, manifests by digest go to its alternates first and to it only when none has them, keeping its last pulls for what no alternate holds (tags, which resolve by HEAD, and blobs, which it does not count, still go to it). 0 keeps none."`
	AlternateTags   bool              `group:"Upstream" name:"alternate-tags" help:"Let --alternate resolve a tag while its registry fails (429, 5xx, unreachable, timeout) and cacheyd holds no answer for it to serve stale; a 404 or 401 from the registry still stands, and a tag asked with a client's credentials never goes there. Each tag so resolved is logged and counted (cacheyd_alternate_tags_total). Off: tags are resolved at REGISTRY only. A mirror's tag may lag the registry's."`
	CredentialsFile string            `group:"Upstream" type:"path" placeholder:"FILE" help:"Docker config.json with cacheyd's own credentials per registry."`

	UpstreamHeaderTimeout time.Duration `group:"Upstream" name:"upstream-header-timeout" default:"5s" help:"Longest time from the start of an upstream fetch to its response headers (dial, TLS, token, redirects included); past it upstream counts as timed out (0: 5s)."`

	Registries    []string `group:"Security" name:"registries" placeholder:"NAME,..." help:"Serve only these registries; a request for any other is answered 403 DENIED and fetches nothing (default: every public registry)."`
	AllowRegistry []string `group:"Security" name:"allow-registry" placeholder:"NAME" help:"Accept registry NAME (host[:port], port 443 if none; that port only) even if an IP address or localhost, and dial it at private, loopback or link-local addresses, e.g. an internal registry or its blob store. Repeatable."`
	AllowRealm    []string `group:"Security" name:"allow-realm" placeholder:"HOST[:PORT]" help:"Accept token realms on HOST[:PORT] (no port: the realm URL scheme's, 443 or 80) for any registry, for token requests only; by default a realm must be on the registry's host or its registrable domain. Repeatable."`
	ClientToken   []string `group:"Security" name:"client-token" placeholder:"TOKEN" help:"Serve /v2 only to requests whose X-Cacheyd-Token header is TOKEN (16+ visible ASCII characters; several for a rotation). Prefer CACHEYD_CLIENT_TOKEN: flags show in ps."`
	GuardMetrics  bool     `group:"Security" name:"guard-metrics" help:"Require the client token on /metrics too (/healthz and /readyz stay open)."`
	TLSCert       string   `group:"Security" name:"tls-cert" type:"path" placeholder:"FILE" help:"Serve HTTPS with this PEM certificate chain (with --tls-key); read at start."`
	TLSKey        string   `group:"Security" name:"tls-key" type:"path" placeholder:"FILE" help:"PEM private key of --tls-cert."`

	Peers         []string      `group:"Cluster" name:"peers" placeholder:"HOST:PORT,...|dns:NAME:PORT" help:"Share fills with the other replicas: every member (this one included) as HOST:PORT, or dns:NAME:PORT for the addresses of a headless Service, re-resolved every --peer-refresh. Each digest and tag is then fetched from upstream by its one owner among them (default: this replica alone)."`
	PeerRefresh   time.Duration `group:"Cluster" name:"peer-refresh" placeholder:"DURATION" help:"How often a dns: member list is resolved again (0: 5s)."`
	Advertise     string        `group:"Cluster" name:"advertise" placeholder:"HOST:PORT" help:"This replica's address as the members list it (default: $POD_IP, else the first non-loopback address, with the --peer-listen port if set, else the --listen port)."`
	Parent        string        `group:"Cluster" name:"parent" placeholder:"URL" help:"Another cacheyd (typically the cluster Service) asked first on every miss, with upstream as the fallback when it fails, e.g. http://cacheyd.cacheyd.svc.cluster.local:30123."`
	PeerListen    string        `group:"Cluster" name:"peer-listen" placeholder:"ADDR" help:"Serve the replicas of the cluster on this address too (the members' port: --advertise defaults to it), e.g. :30124; with --peer-tls-cert over HTTPS, while nodes keep plain HTTP on --listen (default: members use --listen)."`
	PeerTLSCert   string        `group:"Cluster" name:"peer-tls-cert" type:"path" placeholder:"FILE" help:"Serve --peer-listen with HTTPS with this PEM certificate chain (with --peer-tls-key), and ask peers over HTTPS: trusting the system roots and this certificate, which a peer presenting it passes at any address (replicas share one; pod addresses are not known when it is made)."`
	PeerTLSKey    string        `group:"Cluster" name:"peer-tls-key" type:"path" placeholder:"FILE" help:"PEM private key of --peer-tls-cert."`
	ClusterSecret string        `group:"Cluster" name:"cluster-secret" placeholder:"SECRET" help:"The secret every replica of the cluster holds (32+ visible ASCII characters; required with --peers): replicas prove their requests and answers with it, seal clients' credentials with it, and ask a member only once it proved it. Prefer CACHEYD_CLUSTER_SECRET from a Secret: flags show in ps."`

	// Explicit env names: kong's own would spell S3 as S_3.
	S3Bucket    string        `group:"Object storage" name:"s3-bucket" env:"CACHEYD_S3_BUCKET" placeholder:"NAME" help:"Keep verified public content in this S3 bucket too, behind the disk tier, and read it from there on a miss before the parent and the registry: the cache then outlives its pods and is shared by every cluster naming the bucket. Credentials from the standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, EKS IRSA or Pod Identity, the instance profile). Eviction is the bucket's lifecycle rule; cacheyd never deletes from it (default: none)."`
	S3Endpoint  string        `group:"Object storage" name:"s3-endpoint" env:"CACHEYD_S3_ENDPOINT" placeholder:"URL" help:"The S3 API's URL for a store other than AWS, e.g. https://storage.googleapis.com or http://minio.storage:9000 (default: AWS S3 in --s3-region)."`
	S3Region    string        `group:"Object storage" name:"s3-region" env:"CACHEYD_S3_REGION" placeholder:"REGION" help:"The bucket's region (default: asked of the store, which needs s3:GetBucketLocation)."`
	S3Prefix    string        `group:"Object storage" name:"s3-prefix" env:"CACHEYD_S3_PREFIX" default:"cacheyd/" placeholder:"PREFIX" help:"Key prefix: objects are PREFIXblobs/sha256/<2 hex>/<hex>."`
	S3PathStyle bool          `group:"Object storage" name:"s3-path-style" env:"CACHEYD_S3_PATH_STYLE" help:"Name the bucket in the URL's path rather than its host (MinIO-compatible stores)."`
	S3Timeout   time.Duration `group:"Object storage" name:"s3-timeout" env:"CACHEYD_S3_TIMEOUT" default:"5s" help:"Longest wait for the store's answer to one request, and for a body's next bytes; past it the store is skipped (the next source is asked) and counted."`

	LogLevel  string `group:"Logging" default:"info" enum:"debug,info,warn,error" help:"Least severe level logged: debug, info, warn or error."`
	LogFormat string `group:"Logging" default:"text" enum:"text,json" help:"Log format: text or json."`
}

// Serve runs cacheyd with these flags until ctx ends, logging to log and
// the access lines to access if set (NewLogger). listening, if set, is
// told the bound address (tests listen on port 0).
func (s *Flags) Serve(ctx context.Context, log *slog.Logger, access io.Writer, listening func(net.Addr)) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	cfg.Server.AccessLog = access
	return app.Run(ctx, cfg, log, listening)
}

// Config turns the flags into cacheyd's configuration.
func (s *Flags) Config() (app.Config, error) {
	dir, err := s.ResolvedCacheDir()
	if err != nil {
		return app.Config{}, err
	}
	urls, err := RegistryURLs(s.RegistryURL)
	if err != nil {
		return app.Config{}, err
	}
	allowed, err := AllowedHosts(s.AllowRegistry)
	if err != nil {
		return app.Config{}, err
	}
	tlsConfig, err := loadTLS(s.TLSCert, s.TLSKey)
	if err != nil {
		return app.Config{}, err
	}
	peerTLS, err := s.peerTLS()
	if err != nil {
		return app.Config{}, err
	}
	cl, err := s.clusterConfig(tlsConfig, peerTLS)
	if err != nil {
		return app.Config{}, err
	}
	alts, err := Alternates(s.Alternate)
	if err != nil {
		return app.Config{}, err
	}
	return app.Config{
		Alternates: alts, AlternateMode: sources.AlternateMode(s.AlternateMode), BudgetReserve: s.BudgetReserve, AlternateTags: s.AlternateTags,
		Listen: s.Listen, PeerListen: s.PeerListen, ShutdownTimeout: s.ShutdownTimeout,
		Upstream: s.UpstreamConfig(urls, allowed),
		Cluster:  cl,
		Cache: cache.Config{
			Dir: dir, MemoryBytes: int64(s.MemoryBytes), MemoryMaxObject: int64(s.MemoryMaxObject),
			DiskBytes: int64(s.DiskBytes), TagTTL: s.TagTTL, TagStaleMax: s.TagStaleMax,
			FillTimeout: s.FillTimeout, MaxFills: s.MaxFills, MaxFillsPerRegistry: s.MaxFillsPerReg, FillStall: s.FillStall,
			FillChunk: int64(s.FillChunk), FillParallel: s.FillParallel, ReadMemory: int64(s.ReadMemory),
			AnswerTimeout: s.UpstreamHeaderTimeout,
		},
		Store: s3.Config{Bucket: s.S3Bucket, Endpoint: s.S3Endpoint, Region: s.S3Region, Prefix: s.S3Prefix,
			PathStyle: s.S3PathStyle, Timeout: s.S3Timeout},
		Server: server.Config{
			DefaultRegistry: s.DefaultRegistry, Name: "cacheyd",
			ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout, IdleTimeout: s.IdleTimeout,
			MaxConns: s.MaxConns, MaxConnsPerIP: s.MaxConnsPerIP,
			Registries: s.Registries, ClientTokens: s.ClientToken, GuardMetrics: s.GuardMetrics, TLS: tlsConfig, PeerTLS: peerTLS,
			Status: server.StatusInfo{Version: Version(), MemoryBytes: int64(s.MemoryBytes), DiskBytes: int64(s.DiskBytes)},
		},
	}, nil
}

// UpstreamConfig is the upstream client's Config for these flags, given
// the parsed --registry-url and --allow-registry.
func (s *Flags) UpstreamConfig(urls map[string]string, allowed []string) upstream.Config {
	return upstream.Config{
		RegistryURLs: urls, CredentialsFile: s.CredentialsFile, ResponseHeaderTimeout: s.UpstreamHeaderTimeout,
		AllowedHosts: allowed, AllowRealms: s.AllowRealm, Registries: s.Registries,
		UserAgent: "cacheyd/" + Version(),
	}
}

// ResolvedCacheDir is --cache-dir, or cacheyd in the user's cache
// directory, or in the temporary directory when the user has none (a
// container without HOME).
func (s *Flags) ResolvedCacheDir() (string, error) {
	if s.CacheDir != "" {
		return s.CacheDir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "cacheyd"), nil
}

// RegistryURLs validates --registry-url and keys it by canonical registry.
func RegistryURLs(in map[string]string) (map[string]string, error) {
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

// Alternates parses --alternate, REGISTRY=URL each, in order.
func Alternates(in []string) ([]app.Alternate, error) {
	out := make([]app.Alternate, 0, len(in))
	for _, e := range in {
		name, u, ok := strings.Cut(e, "=")
		if !ok || u == "" {
			return nil, fmt.Errorf("--alternate %.100q: want REGISTRY=URL", e)
		}
		canon, err := oci.NormalizeRegistry(name)
		if err != nil {
			return nil, fmt.Errorf("--alternate %s: %w", name, err)
		}
		out = append(out, app.Alternate{Registry: canon, URL: u})
	}
	return out, nil
}

// AllowedHosts turns --allow-registry names into the upstream client's
// AllowedHosts: registry names, a host alone meaning port 443 as in any
// registry name, host:port that port; never every port of a host.
func AllowedHosts(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		canon, err := oci.NormalizeRegistry(n)
		if err != nil {
			return nil, fmt.Errorf("--allow-registry %s: %w", n, err)
		}
		if canon == oci.DockerHub {
			canon = oci.DockerHubAPI // the host Docker Hub is fetched from
		}
		out = append(out, canon)
	}
	return out, nil
}
