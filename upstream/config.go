package upstream

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cacheyd/cacheyd/metrics"
)

// Defaults for the zero values of Config.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 5 * time.Second
	DefaultAuthTimeout           = 30 * time.Second
	DefaultAuthCacheSize         = 4096
	DefaultUserAgent             = "cacheyd"
	// DefaultMaxResponseHeaderBytes is far above any registry's headers
	// (a challenge, a digest, a signed CDN URL in Location).
	DefaultMaxResponseHeaderBytes = 256 << 10

	// tlsHandshakeTimeout bounds a TLS handshake; a registry that accepts
	// the connection but never finishes the handshake is as unreachable
	// as one that refuses it.
	tlsHandshakeTimeout = 10 * time.Second
	// maxIdleConnsPerHost keeps enough warm connections to one registry
	// (and its CDN) for a burst of concurrent fills.
	maxIdleConnsPerHost = 32
)

// Config configures a Client. The zero value fetches every registry from its
// public address, anonymously, and refuses to dial any address that is not
// public.
type Config struct {
	// RegistryURLs maps a canonical registry name (as oci.NormalizeRegistry
	// returns it, so "docker.io" for Docker Hub) to the base URL it is
	// fetched from: "http" or "https", a host and an optional port, no path
	// ("http://127.0.0.1:5000", "https://mirror.internal"). A mapped URL is
	// trusted as exactly that URL for exactly that registry name: its
	// host:port (the port defaulting to the scheme's, 80 or 443) is dialled
	// whatever it resolves to for that registry's fetches and redirects
	// only, and no other port of its host is, nor is the host:port itself
	// accepted as a registry name a client gives, nor followed as another
	// registry's redirect (list it in AllowedHosts as well to make it a
	// redirect target for every registry the operator names).
	// Registries not in the map are fetched from https://<registry>, Docker
	// Hub from https://registry-1.docker.io. Nil maps nothing.
	RegistryURLs map[string]string

	// CredentialsFile is a Docker config.json whose "auths" hold cacheyd's
	// own credentials, per registry ("auth" as base64 user:password, or
	// "username"/"password", "identitytoken", "registrytoken"). It is read
	// once, by New. Credential helpers (credsStore, credHelpers) are not
	// run. Empty means cacheyd fetches anonymously everywhere.
	CredentialsFile string

	// DialTimeout bounds resolving a host and connecting to it, so that an
	// unreachable upstream fails fast. Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds each Fetch from its start to the
	// response headers as a whole: resolving, dialling, TLS, the ping and
	// token exchange, every redirect and the headers of the final answer
	// (headers trickled in a byte at a time included). When it passes,
	// Fetch fails with an error wrapping oci.ErrUpstreamUnavailable and
	// oci.ErrUpstreamTimeout. Bodies are not bounded here: the caller's
	// context bounds them. Zero means DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// AuthTimeout bounds setting up cacheyd's identity for one repository
	// (the /v2/ ping and the token request). The setup is shared by every
	// request for the repository and runs on past a Fetch that stops
	// waiting for it at ResponseHeaderTimeout. Zero means
	// DefaultAuthTimeout.
	AuthTimeout time.Duration
	// AuthCacheSize bounds how many (registry, repository) identities, each
	// holding a token, are kept; the least recently used is dropped first.
	// Zero means DefaultAuthCacheSize.
	AuthCacheSize int

	// TLSConfig is used for https connections. Nil means Go's defaults
	// with the system's roots.
	TLSConfig *tls.Config
	// Transport, when set, carries every request instead of the Client's
	// own two (fetches and token requests), and then the dial policy
	// (AllowPrivate, AllowedHosts, AllowRealms' addresses, Resolver), the
	// dial and TLS timeouts and TLSConfig are the Transport's business.
	// Registry names are still checked (IP literals, localhost, configured
	// hosts) and ResponseHeaderTimeout still applies. Nil means the
	// Client's own transports. For tests.
	Transport http.RoundTripper

	// UserAgent is sent with every request. Empty means DefaultUserAgent.
	UserAgent string
	// Metrics receives upstream request and byte counts. Nil means the
	// counts are kept in collectors nobody registered.
	Metrics *metrics.Metrics
	// MaxResponseHeaderBytes bounds the header section of an upstream
	// response, so that a hostile registry cannot make cacheyd buffer
	// megabytes of headers. Zero means DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64

	// Logger receives what the Client notices but does not return, such
	// as ignored credential entries. Nil means nothing is logged.
	Logger *slog.Logger

	// AllowPrivate lets hosts that are neither mapped nor allowed be
	// dialled at loopback, private (RFC 1918, ULA), CGNAT, link-local,
	// multicast and unspecified addresses. False refuses them, so that a
	// client's ?ns= cannot reach into cacheyd's network; token realms and
	// redirects go through the same check. It does not admit IP literals,
	// localhost or configured hosts as registry names: list those in
	// AllowedHosts or RegistryURLs. Nor does it open a mapped or allowed
	// host:port to a fetch outside its trust (another registry's, one a
	// client merely named): those stay refused.
	AllowPrivate bool
	// AllowedHosts are registries, each named as a client names it,
	// HOST[:PORT] ("registry.internal:5000", "10.0.0.5", "[::1]:5000"), the
	// port defaulting to 443 as a registry name's does. Each allows exactly
	// that host:port, never another port of the host: it is accepted as a
	// registry name (an IP address or localhost too) and dialled whatever
	// it resolves to. A redirect target at a private address (an internal
	// blob store) is dialled only if its host:port is listed the same way
	// (an http store on port 80 as "blobs.internal:80"), and only when the
	// redirecting registry is one the operator named (in RegistryURLs or
	// here): a registry a client merely names is refused every address
	// listed here as a redirect target. Nil allows none.
	AllowedHosts []string
	// AllowRealms are addresses, HOST[:PORT], that may serve token realms
	// for any registry; a missing port means the default port of the realm
	// URL's scheme (443 for https, 80 for http). Without them a realm must
	// be on the registry's own host or share its registrable domain
	// (registry-1.docker.io and auth.docker.io share docker.io); any other
	// realm is refused, 403 DENIED wrapping ErrRefused, before it is asked
	// for a token, because cacheyd's credentials for the registry would go
	// there. An address listed here is dialled whatever it resolves to for
	// token requests only, on a transport of their own: it is not a
	// registry name a client may give, nor a redirect target. Nil allows
	// no other realm.
	AllowRealms []string
	// Registries restricts the Client to these registries (names as
	// oci.ParseRegistryList takes them); a request for any other is refused
	// with 403 DENIED before anything is dialled. Empty serves every
	// registry.
	Registries []string
	// Resolver resolves the host names the dial policy checks. Nil means
	// net.DefaultResolver. Tests set it so that no name reaches real DNS.
	Resolver Resolver
	// Now tells the time registries' pull budgets are read and held by
	// (budget.go). Nil means time.Now.
	Now func() time.Time
}

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// withDefaults returns cfg with every zero value replaced by its meaning.
func (cfg Config) withDefaults() Config {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.AuthCacheSize <= 0 {
		cfg.AuthCacheSize = DefaultAuthCacheSize
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	return cfg
}
