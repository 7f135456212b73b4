package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// ErrRefused marks an upstream address that the registry policy does not
// let cacheyd dial. It is wrapped in an *oci.Error with status 403 and code
// DENIED, which is what the client is answered.
var ErrRefused = errors.New("address refused by registry policy")

// withheldWhy is why an address the operator named is refused to a
// fetch outside its scope.
func withheldWhy(addr string) string {
	return fmt.Sprintf("%.100s is trusted only for the fetches of the registry the operator named it for", addr)
}

// refusal is the error for a host or address the policy refuses.
func refusal(host, why string) *oci.Error {
	return &oci.Error{
		Status:  http.StatusForbidden,
		Code:    oci.CodeDenied,
		Message: fmt.Sprintf("upstream %s is not allowed by cacheyd's registry policy", host),
		Err:     fmt.Errorf("%w: %s", ErrRefused, why),
	}
}

// dialer connects to upstream hosts under the policy that keeps cacheyd
// from being an open proxy into its own network. Addresses the operator
// named, exactly as host:port, are dialled whatever they resolve to when
// the request may use them (judge); any other address is resolved here and
// only its public addresses are dialled, by address, so that a second DNS
// answer between the check and the connect (rebinding) cannot matter. The
// Client has two: one for fetches (pings, content, redirects), which judges
// each address by the scope of the fetch the dial is for (trust.go), and
// one for token requests, which judges the same way and also trusts the
// allowed realms (see realm.go).
type dialer struct {
	// judge says how the request whose context ctx is may treat addr, a
	// canonical host:port. The transport dials with the context of the
	// request that asked for the connection, values and all.
	judge        func(ctx context.Context, addr string) addrTrust
	allowPrivate bool
	resolver     Resolver
	timeout      time.Duration
	net          net.Dialer
}

func newDialer(cfg Config, judge func(ctx context.Context, addr string) addrTrust) *dialer {
	return &dialer{
		judge:        judge,
		allowPrivate: cfg.AllowPrivate,
		resolver:     cfg.Resolver,
		timeout:      cfg.DialTimeout,
		net:          net.Dialer{KeepAlive: 30 * time.Second},
	}
}

// fetchJudge judges an address by the scope of the fetch in ctx.
func fetchJudge(tr trust) func(context.Context, string) addrTrust {
	return func(ctx context.Context, addr string) addrTrust {
		return tr.forFetch(scopeFrom(ctx), addr)
	}
}

// tokenJudge judges an address for a token request: an allowed realm's
// address is trusted (for token requests only, on this transport), any
// other as a fetch in the scope in ctx may treat it. A realm a registry
// names on its own registrable domain is therefore no way to a mapped or
// allowed address the registry is not trusted for.
func tokenJudge(tr trust) func(context.Context, string) addrTrust {
	realms := tr.realmAddrs()
	return func(ctx context.Context, addr string) addrTrust {
		if realms[addr] {
			return trusted
		}
		return tr.forFetch(scopeFrom(ctx), addr)
	}
}

// DialContext is the transport's dial function.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	verdict := d.judge(ctx, addrKey(host, port))
	if verdict == withheld {
		return nil, refusal(host, withheldWhy(addr))
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()

	var addrs []net.IPAddr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []net.IPAddr{{IP: a.AsSlice(), Zone: a.Zone()}}
	} else if addrs, err = d.resolver.LookupIPAddr(ctx, host); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}

	var permitted []net.IPAddr
	var why string
	for _, a := range addrs {
		if verdict != trusted && !d.allowPrivate {
			if reason := nonPublic(a.IP); reason != "" {
				why = fmt.Sprintf("%s resolves to %s (%s)", host, a.IP, reason)
				continue
			}
		}
		permitted = append(permitted, a)
	}
	if len(permitted) == 0 {
		if why == "" {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
		return nil, refusal(host, why)
	}
	return d.dialSerial(ctx, network, permitted, port)
}

// dialSerial tries each address in turn, giving each an equal share of the
// time left (at least 2s), as net.Dialer does for the addresses it resolves.
func (d *dialer) dialSerial(ctx context.Context, network string, addrs []net.IPAddr, port string) (net.Conn, error) {
	var firstErr error
	for i, a := range addrs {
		actx := ctx
		if deadline, ok := ctx.Deadline(); ok && i < len(addrs)-1 {
			share := time.Until(deadline) / time.Duration(len(addrs)-i)
			share = max(share, 2*time.Second)
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(ctx, share)
			defer cancel()
		}
		conn, err := d.net.DialContext(actx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// Address ranges that are not public but that netip has no predicate for.
var nonPublicPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("100::/64"), "discard"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// sixToFour is the 6to4 prefix, whose addresses carry an IPv4 address in
// bits 16 to 48.
var sixToFour = netip.MustParsePrefix("2002::/16")

// nat64 is the well-known NAT64 prefix, whose addresses reach the IPv4
// address in their last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// nonPublic says why ip must not be dialled, or "" when it is public.
func nonPublic(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return "not an IP address"
	}
	a = a.Unmap()
	// Addresses that carry an IPv4 address are judged by it: a gateway
	// that translates them reaches that address.
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	if a.Is6() && sixToFour.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[2:6]))
	}
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	case a.IsUnspecified():
		return "unspecified"
	}
	for _, p := range nonPublicPrefixes {
		if p.prefix.Contains(a) {
			return p.why
		}
	}
	return ""
}
