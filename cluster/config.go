package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/metrics"
)

// Config configures an Origin. With neither Peers nor Parent set there is
// no cluster (Enabled is false) and the caller fetches from upstream alone.
type Config struct {
	// Peers lists every member of the cluster as host:port, this replica
	// included, or is one entry "dns:NAME:PORT": the A and AAAA records of
	// NAME (a headless Service), each with PORT, re-resolved every
	// Refresh. Empty means no peers.
	Peers []string
	// Refresh is how often a dns: member list is resolved again. Zero
	// means 5s.
	Refresh time.Duration
	// Advertise is this replica's own member address, host:port, as the
	// others have it in their lists. Required with Peers. It is always a
	// member, even while DNS does not list it yet.
	Advertise string
	// Listen is this cacheyd's own listen address (":30123"), so that a
	// Parent that is this very cacheyd is refused: one on a loopback
	// address or localhost with Listen's port when Listen has no host, or
	// Listen's own host:port. Empty checks Parent against Advertise only.
	Listen string
	// Parent is the base URL of another cacheyd ("http://cacheyd.svc:30123")
	// asked first for every key this replica fetches itself, with upstream
	// as the fallback when it fails. Empty means none.
	Parent string
	// Token is sent as oci.TokenHeader to peers and the parent, which
	// demand it when they have client tokens. Empty sends none.
	Token string
	// Secret is the cluster secret every member holds (at least
	// peerauth.MinSecretLength characters of visible ASCII): requests to
	// members carry its proof, their answers are believed only with
	// theirs, a client's Authorization reaches them only sealed with it,
	// and a member owns keys only once it has proved it (a probe of
	// peerauth.ProbePath). Required with Peers; unused without.
	Secret string
	// Instance is this cacheyd's instance id, added to the oci.ViaHeader
	// chain of every request sent to the parent (a peer's request carries
	// the chain on as it came), so that a cacheyd that finds itself in
	// the chain (a loop of parents) refuses the request rather than wait
	// for itself. Empty adds none.
	Instance string
	// Heard is told of each pull budget a member states on its proven
	// answer to a manifest request (peerauth.BudgetHeader): the budget the
	// member last read from registry (the request's, canonical) itself,
	// member its address. A seen time ahead of this clock is taken as now.
	// It is called on the requests' goroutines. Nil hears none.
	Heard func(registry, member string, b peerauth.Budget)
	// ProbeTimeout bounds one probe of a member. A member new to the view
	// gets this long to answer its first (probed again every 100ms while
	// it cannot be reached: replicas of a static list start one after
	// another), and a request that would go to it waits for that first
	// verdict. Zero means 3s.
	ProbeTimeout time.Duration
	// TLS, when set, makes requests to peers HTTPS with this client
	// configuration (the parent's scheme is its URL's). Nil means plain
	// HTTP inside the cluster.
	TLS *tls.Config
	// Backoff is how long a peer (or the parent) that failed is skipped: a
	// member is probed again after it, and asked again once it proves the
	// cluster secret; a member that could not prove it is probed again
	// every Backoff. Zero means 10s.
	Backoff time.Duration
	// DialTimeout bounds connecting to a peer. Zero means 2s.
	DialTimeout time.Duration
	// HeaderTimeout bounds waiting for a peer's response headers. It must
	// be longer than the peer's own wait for upstream (its answer timeout,
	// 5s by default), so that a slow upstream reaches the client through
	// the owner rather than as a fallback. Zero means 15s.
	HeaderTimeout time.Duration
	// BodyIdle is how long a body from a peer or the parent may send
	// nothing before its reader abandons it as stalled
	// (oci.Response.Idle), which skips that cacheyd. It must be longer
	// than the time the other cacheyd takes to resume a registry that
	// stalls: its fill's idle timeout and its upstream's header timeout.
	// Zero means 65s (twice the default fill idle timeout, 30s, plus the
	// default upstream header timeout, 5s).
	BodyIdle time.Duration
	// Resolver resolves dns: member lists. Nil means net.DefaultResolver.
	Resolver Resolver
	// Metrics receives the cluster's counts; nil means they go nowhere.
	Metrics *metrics.Metrics
	// Logger receives membership changes and peer failures; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Resolver is the part of *net.Resolver that dns: member lists use; tests
// give a fake one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Enabled reports whether c asks anyone but upstream.
func (c Config) Enabled() bool { return len(c.Peers) > 0 || c.Parent != "" }

const (
	defaultRefresh       = 5 * time.Second
	defaultBackoff       = 10 * time.Second
	defaultDialTimeout   = 2 * time.Second
	defaultHeaderTimeout = 15 * time.Second
	defaultProbeTimeout  = 3 * time.Second
	defaultBodyIdle      = 2*30*time.Second + 5*time.Second
)

// source is where members come from: a static list, or a DNS name and
// port.
type source struct {
	static        []string
	dnsName, port string
}

// parse checks c and returns its member source, its own address and its
// parent's base URL in canonical form.
func (c Config) parse() (src source, self, parent string, err error) {
	if c.Parent != "" {
		u, err := url.Parse(c.Parent)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return src, "", "", fmt.Errorf("cluster: parent %q: want a base URL such as http://cacheyd.cacheyd.svc:30123", c.Parent)
		}
		parent = u.Scheme + "://" + u.Host
		if listensAt(c.Listen, parentAddr(parent)) {
			return src, "", "", fmt.Errorf("cluster: parent %s is this cacheyd (it listens on %s): every miss would come back to it", c.Parent, c.Listen)
		}
	}
	if len(c.Peers) == 0 {
		return src, "", parent, nil
	}
	if c.Secret == "" {
		return src, "", "", errors.New("cluster: a member list needs the cluster secret every member holds (Config.Secret): members are believed only with its proof")
	}
	if err := peerauth.Validate(c.Secret); err != nil {
		return src, "", "", fmt.Errorf("cluster: %w", err)
	}
	if self, err = canonAddr(c.Advertise); err != nil {
		return src, "", "", fmt.Errorf("cluster: advertise address: %w", err)
	}
	if parent != "" && parentAddr(parent) == self {
		return src, "", "", fmt.Errorf("cluster: parent %s is this replica (%s): every miss would come back to it", c.Parent, self)
	}
	if rest, ok := strings.CutPrefix(c.Peers[0], "dns:"); ok {
		if len(c.Peers) > 1 {
			return src, "", "", errors.New("cluster: a dns: member list stands alone")
		}
		name, port, err := net.SplitHostPort(rest)
		if err != nil || name == "" || validPort(port) != nil {
			return src, "", "", fmt.Errorf("cluster: member list %q: want dns:NAME:PORT", c.Peers[0])
		}
		return source{dnsName: name, port: port}, self, parent, nil
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		a, err := canonAddr(p)
		if err != nil {
			return src, "", "", fmt.Errorf("cluster: member %q: %w", p, err)
		}
		if !seen[a] {
			seen[a] = true
			src.static = append(src.static, a)
		}
	}
	if !seen[self] {
		return src, "", "", fmt.Errorf("cluster: this replica (%s) is not among the members %v", self, src.static)
	}
	if len(src.static) > MaxMembers {
		return src, "", "", fmt.Errorf("cluster: %d members, more than the %d a cluster may have", len(src.static), MaxMembers)
	}
	return src, self, parent, nil
}

// listensAt reports whether a cacheyd listening on listen (host:port, the
// host possibly empty or unspecified) answers at addr (a canonical
// host:port) on this machine.
func listensAt(listen, addr string) bool {
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil || addr == "" {
		return false
	}
	host, port, _ := net.SplitHostPort(addr)
	if port != lport {
		return false
	}
	if ip := net.ParseIP(lhost); lhost == "" || (ip != nil && ip.IsUnspecified()) {
		ip := net.ParseIP(host)
		return host == "localhost" || (ip != nil && ip.IsLoopback())
	}
	l, err := canonAddr(listen)
	return err == nil && l == addr
}

// parentAddr is the host:port of a parent's canonical base URL, its
// scheme's port when it names none, as canonAddr writes it ("" if it does
// not parse).
func parentAddr(parent string) string {
	u, err := url.Parse(parent)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	a, _ := canonAddr(net.JoinHostPort(u.Hostname(), port))
	return a
}

// canonAddr checks a host:port and writes it one way: host lower-case, an
// IP as net.IP prints it.
func canonAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", fmt.Errorf("%q: want host:port", s)
	}
	if err := validPort(port); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

func validPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", p)
	}
	return nil
}

// AdvertiseAddr is the default member address of a replica listening on
// listen (":30123"): podIP (the downward API's status.podIP) if set, else
// the first non-loopback unicast address of this machine, with listen's
// port; a listen address with a host other than 0.0.0.0 or :: is its own
// answer.
func AdvertiseAddr(podIP, listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("cluster: listen address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return net.JoinHostPort(host, port), nil
	}
	if podIP != "" {
		return net.JoinHostPort(podIP, port), nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("cluster: interface addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			return net.JoinHostPort(n.IP.String(), port), nil
		}
	}
	return "", errors.New("cluster: no non-loopback address to advertise; set --advertise")
}
