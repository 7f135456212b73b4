package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
)

// Config configures a Server. The zero value of every field is usable and
// gives the defaults documented on each field.
type Config struct {
	// DefaultRegistry answers requests that name no registry, neither with
	// ?ns= nor with a host-like first path component (dockerd's
	// registry-mirrors send neither). Zero means "docker.io".
	DefaultRegistry string

	// Name is sent as the Server response header. Zero sends no Server
	// header at all.
	Name string

	// Logger receives one access line per request and the HTTP library's
	// connection errors (at Debug). Nil means slog.Default().
	Logger *slog.Logger
	// AccessLog, if set, receives the access lines instead of Logger,
	// still at the levels Logger enables: each line with one Write, in the
	// format slog.NewTextHandler gives them (cheaper than going through
	// slog on the hit path; accessline.go). Set it to the writer of
	// Logger's text handler, and only for a handler that adds nothing of
	// its own (no With attributes, no ReplaceAttr): a JSON log leaves it
	// nil.
	AccessLog io.Writer
	// Metrics receives request counts, durations and bytes served. Nil
	// means counts go nowhere.
	Metrics *metrics.Metrics
	// Gatherer is served at /metrics, and read for the status page at /.
	// Nil answers /metrics with 404 and shows no figures at /.
	Gatherer prometheus.Gatherer
	// Status is what the status page at / shows beside the live figures.
	Status StatusInfo

	// ReadTimeout bounds reading one request, headers included, from its
	// first byte. Zero means 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds how long a response may make no progress: the
	// headers and an in-memory body must be written within it, and a
	// streamed body gets a fresh WriteTimeout for every piece of at most
	// 1 MiB handed to the connection. So a slow but steady client of a
	// multi-GiB layer is never cut off, while one that stops reading is
	// dropped after WriteTimeout. Zero means 60s.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Zero means 120s, longer than the 90s after which Go's and
	// containerd's HTTP clients drop idle connections themselves, so that
	// it is the client that closes and never races a request against our
	// close.
	IdleTimeout time.Duration

	// MaxConns bounds the connections served at once; a new connection
	// beyond it is answered and closed: GET and HEAD of /healthz and
	// /readyz as within the limit, anything else 503 UNAVAILABLE (OCI error
	// JSON). Zero means 16384.
	MaxConns int
	// MaxConnsPerIP bounds the connections from one client address, refused
	// as MaxConns refuses. Zero means unlimited, which suits a cache that
	// nodes reach through a Service (source NAT can make many nodes one
	// address).
	MaxConnsPerIP int
	// MaxHeaderBytes bounds a request's header section, request line
	// included; a request with more is answered 431. Bearer tokens of some
	// registries run to several KiB. Zero means 16 KiB.
	MaxHeaderBytes int

	// Registries restricts the server to these registries (names as
	// oci.ParseRegistryList takes them): a request for any other is
	// answered 403 DENIED before the cache is asked, so nothing is fetched
	// and nothing cached is served. DefaultRegistry must be one of them.
	// Empty serves every registry.
	Registries []string

	// ClientTokens, when set, admit to the registry API (/v2) only requests
	// whose TokenHeader is one of them; others are answered 401
	// UNAUTHORIZED. Each token is at least MinClientTokenLength characters
	// of visible ASCII; several allow a rotation. The Authorization header
	// is not used for this: it carries the client's own registry
	// credentials, passed upstream. /healthz and /readyz stay open, and so
	// does /metrics unless GuardMetrics is set. Nil admits every request.
	ClientTokens []string
	// GuardMetrics puts /metrics behind ClientTokens too. False leaves it
	// open; it holds counts by registry, tier and status, no repository
	// names or digests.
	GuardMetrics bool

	// ClusterSecret is the secret the replicas of a cluster share (at
	// least peerauth.MinSecretLength characters of visible ASCII). With
	// it, a request with the hop header (oci.HopHeader) is served as a
	// peer's only with a valid proof of it, its sealed Authorization is
	// unsealed, and its answer is proven; peerauth.ProbePath answers
	// replicas that admit this one. Empty refuses every request with the
	// hop header (403 DENIED) and every probe: no one can prove a secret
	// this cacheyd does not have.
	ClusterSecret string
	// PeerBudget returns the pull budget this cacheyd last read from
	// registry itself (never one a member told it of), which its answers
	// to members' manifest requests state (peerauth.BudgetHeader), so that
	// the member shows what this owner saw; false states none. Nil states
	// none.
	PeerBudget func(registry string) (peerauth.Budget, bool)
	// Instance is this cacheyd's instance id, as it names itself in
	// oci.ViaHeader when it asks its parent or a peer: a request whose Via
	// names it came back through a chain of parents and is refused 508
	// LOOP_DETECTED. Empty checks only the chain's length (oci.MaxVia).
	Instance string

	// TLS, when set, makes Serve speak HTTPS with it (certificates, minimum
	// version); the server offers HTTP/1.1 only. Nil serves plain HTTP.
	TLS *tls.Config
	// PeerTLS, when set, makes ServePeers speak HTTPS with it: the
	// listener of the cluster's members, whose traffic (content, sealed
	// credentials) then travels encrypted while nodes keep plain HTTP on
	// Serve's. Nil serves it plain.
	PeerTLS *tls.Config
}

// Defaults.
const (
	defaultReadTimeout    = 30 * time.Second
	defaultWriteTimeout   = 60 * time.Second
	defaultIdleTimeout    = 120 * time.Second
	defaultMaxConns       = 16384
	defaultMaxHeaderBytes = 16 << 10
	// maxRequestBodyBytes bounds a request body. cacheyd takes no pushes,
	// so a client has nothing to send; a larger body is refused before it
	// is read.
	maxRequestBodyBytes = 8 << 10
)

// Validate reports a Config that New would refuse: negative limits, a
// DefaultRegistry that is not a registry name or not in Registries, a
// malformed registry list or client token.
func (c Config) Validate() error {
	def := oci.DockerHub
	if c.DefaultRegistry != "" {
		var err error
		if def, err = oci.NormalizeRegistry(c.DefaultRegistry); err != nil {
			return fmt.Errorf("server: default registry: %w", err)
		}
	}
	list, err := oci.ParseRegistryList(c.Registries)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if !list.Contains(def) {
		return fmt.Errorf("server: default registry %s is not in the registry list %v", def, []string(list))
	}
	if c.ClusterSecret != "" {
		if err := peerauth.Validate(c.ClusterSecret); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	for _, t := range c.ClientTokens {
		if err := validClientToken(t); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ReadTimeout", int64(c.ReadTimeout)}, {"WriteTimeout", int64(c.WriteTimeout)},
		{"IdleTimeout", int64(c.IdleTimeout)}, {"MaxConns", int64(c.MaxConns)},
		{"MaxConnsPerIP", int64(c.MaxConnsPerIP)}, {"MaxHeaderBytes", int64(c.MaxHeaderBytes)},
	} {
		if f.v < 0 {
			return fmt.Errorf("server: %s is negative", f.name)
		}
	}
	return nil
}

// withDefaults returns c with every zero field replaced by its default and
// DefaultRegistry in canonical form. c must be valid.
func (c Config) withDefaults() Config {
	if c.DefaultRegistry == "" {
		c.DefaultRegistry = oci.DockerHub
	}
	c.DefaultRegistry, _ = oci.NormalizeRegistry(c.DefaultRegistry)
	c.Registries, _ = oci.ParseRegistryList(c.Registries)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	return c
}
