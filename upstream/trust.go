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
//
// Nor is an address trusted for every fetch. A registry answers with
// redirects, and a registry a client names may be hostile, so what one
// fetch may dial depends on the registry it is for (its scope, carried in
// the request's context): a mapped URL's address only for fetches of the
// registry it is mapped for, an allowed address only for fetches of
// registries the operator named (mapped or allowed), where it serves as an
// internal registry or the blob store such a registry redirects to. For
// any other fetch an address the operator named is withheld: refused
// outright, whatever it resolves to and even under AllowPrivate, as route
// refuses it as a registry name. Judging it as an ordinary address instead
// would not hold: the connections a trusted fetch left in the pool are
// reused by host:port without a dial, so the policy must refuse the
// request itself, before any connection is looked for (scopeGuard), and it
// cannot resolve the name there without racing the dial.

// trust holds the configured addresses, canonical (see addrKey). It is
// built by New and never changed.
type trust struct {
	mapped  map[string]string // canonical registry name → the address of its RegistryURLs base URL
	allowed map[string]bool   // every AllowedHosts entry
	named   map[string]bool   // every address in mapped or allowed
	realms  realmPolicy       // AllowRealms
	hosts   map[string]bool   // canonical hosts of all of the above
}

func newTrust(urls map[string]*url.URL, allowedHosts, allowRealms []string) (trust, error) {
	tr := trust{mapped: make(map[string]string), allowed: make(map[string]bool), named: make(map[string]bool), hosts: make(map[string]bool)}
	for reg, u := range urls {
		host, port := urlAddr(u)
		tr.mapped[reg] = addrKey(host, port)
		tr.named[addrKey(host, port)] = true
		tr.hosts[host] = true
	}
	for _, e := range allowedHosts {
		// A registry name without a port means https on 443.
		host, port, err := parseHostPort(e, "443")
		if err != nil {
			return trust{}, fmt.Errorf("upstream: allowed host %w", err)
		}
		tr.allowed[addrKey(host, port)] = true
		tr.named[addrKey(host, port)] = true
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

// scope is what one fetch may dial beyond public addresses, decided by the
// registry it is for. The zero value, a fetch of no known registry, may
// dial no address the operator named.
type scope struct {
	own      string // the address of the registry's mapped URL; "" when it is not mapped
	operator bool   // the operator named the registry: mapped, or allowed
}

// scopeOf is the scope of fetches for t's registry.
func (tr trust) scopeOf(t target) scope {
	own, mapped := tr.mapped[t.registry]
	return scope{own: own, operator: mapped || tr.allowed[addrKey(urlAddr(t.base))]}
}

// addrTrust is how a fetch may treat an address.
type addrTrust int

const (
	ordinary addrTrust = iota // dialled at public addresses only, unless AllowPrivate
	trusted                   // dialled whatever it resolves to
	withheld                  // named by the operator for other fetches: refused
)

// forFetch is how a fetch in scope s may treat addr, a canonical
// host:port.
func (tr trust) forFetch(s scope, addr string) addrTrust {
	switch {
	case s.own != "" && addr == s.own, s.operator && tr.allowed[addr]:
		return trusted
	case tr.named[addr]:
		return withheld
	}
	return ordinary
}

// realmAddrs are the allowed realms' addresses, which token requests may
// dial whatever they resolve to beside what their fetch's scope allows (a
// realm often lives on the registry itself). A realm allowed without a
// port is trusted on both default ports here; realmGuard has already
// checked that the port is the default of the realm URL's scheme.
func (tr trust) realmAddrs() map[string]bool {
	out := map[string]bool{}
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
