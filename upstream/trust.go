package upstream

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// What the operator trusts is a set of exact addresses, host:port, never a
// host on every port: a mapped registry URL is trusted as that URL only,
// an allowed registry as its name's host:port, an allowed realm as its
// host:port for token requests only. A host named in any of them is
// otherwise not an address a client may choose: cacheyd's own network
// often runs other services (SSH, Redis, metadata) on other ports of the
// very hosts the operator named.

// trust holds the configured addresses, canonical (see addrKey). It is
// built by New and never changed.
type trust struct {
	mapped  map[string]bool // the address of every RegistryURLs base URL
	allowed map[string]bool // every AllowedHosts entry
	realms  realmPolicy     // AllowRealms
	hosts   map[string]bool // canonical hosts of all of the above
}

func newTrust(urls map[string]*url.URL, allowedHosts, allowRealms []string) (trust, error) {
	tr := trust{mapped: make(map[string]bool), allowed: make(map[string]bool), hosts: make(map[string]bool)}
	for _, u := range urls {
		host, port := urlAddr(u)
		tr.mapped[addrKey(host, port)] = true
		tr.hosts[host] = true
	}
	for _, e := range allowedHosts {
		// A registry name without a port means https on 443.
		host, port, err := parseHostPort(e, "443")
		if err != nil {
			return trust{}, fmt.Errorf("upstream: allowed host %w", err)
		}
		tr.allowed[addrKey(host, port)] = true
		tr.hosts[host] = true
	}
	realms, err := newRealmPolicy(allowRealms)
	if err != nil {
		return trust{}, err
	}
	tr.realms = realms
	for h := range realms.hosts {
		tr.hosts[h] = true
	}
	for a := range realms.addrs {
		h, _, _ := net.SplitHostPort(a)
		tr.hosts[h] = true
	}
	return tr, nil
}

// fetchAddrs are the addresses ordinary fetches (pings, manifests, blobs,
// redirects) may dial whatever they resolve to.
func (tr trust) fetchAddrs() map[string]bool {
	out := make(map[string]bool, len(tr.mapped)+len(tr.allowed))
	for a := range tr.mapped {
		out[a] = true
	}
	for a := range tr.allowed {
		out[a] = true
	}
	return out
}

// tokenAddrs are the addresses token requests may dial whatever they
// resolve to: the fetch addresses, since a realm often lives on the
// registry itself, and the allowed realms. A realm allowed without a port
// is trusted on both default ports here; realmGuard has already checked
// that the port is the default of the realm URL's scheme.
func (tr trust) tokenAddrs() map[string]bool {
	out := tr.fetchAddrs()
	for a := range tr.realms.addrs {
		out[a] = true
	}
	for h := range tr.realms.hosts {
		out[addrKey(h, "80")] = true
		out[addrKey(h, "443")] = true
	}
	return out
}

// addrKey is the canonical spelling of host:port, as the sets hold it.
func addrKey(host, port string) string {
	return net.JoinHostPort(canonicalHost(host), port)
}

// canonicalHost lower-cases a host and spells an IP address the one way
// netip does, so that "::1" and "0:0::1" are the same host.
func canonicalHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	if a, err := netip.ParseAddr(h); err == nil {
		return a.String()
	}
	return h
}

// urlAddr is the canonical host and the port a URL is dialled on: its
// own, or its scheme's default.
func urlAddr(u *url.URL) (host, port string) {
	port = u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	return canonicalHost(u.Hostname()), port
}

// defaultPort is the port of a scheme that a URL without one means.
func defaultPort(scheme string) string {
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}

// parseHostPort parses an operator's HOST[:PORT] ("[::1]:5000" for IPv6;
// a bare IPv6 address is taken whole) into a canonical host and a port,
// which is def when the entry has none.
func parseHostPort(entry, def string) (host, port string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%.100q: %s", entry, why)
	}
	if strings.ContainsAny(entry, "/@?#") {
		return bad("want HOST or HOST:PORT, not a URL")
	}
	h, p, err := net.SplitHostPort(entry)
	switch {
	case err == nil:
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return bad("invalid port")
		}
		host, port = h, p
	case strings.HasPrefix(entry, "[") && strings.HasSuffix(entry, "]"):
		host, port = entry[1:len(entry)-1], def
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return bad("invalid IPv6 address")
		}
	case isIPv6(entry):
		host, port = entry, def
	case !strings.ContainsAny(entry, ":[]"):
		host, port = entry, def
	default:
		return bad("want HOST or HOST:PORT")
	}
	host = canonicalHost(host)
	if !validHost(host) {
		return bad("invalid host")
	}
	return host, port, nil
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

// validHost reports whether a canonical host is an IP address or a DNS
// name of letters, digits, hyphens and dots.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	return strings.Trim(h, "abcdefghijklmnopqrstuvwxyz0123456789-.") == ""
}
