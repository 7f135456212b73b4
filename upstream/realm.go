package upstream

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	"golang.org/x/net/publicsuffix"
)

// Token realms. A registry's Bearer challenge names the realm where cacheyd
// exchanges its credentials (or none) for a token, so a registry that could
// name any realm could make cacheyd send its credentials for that registry
// anywhere, and make it request any URL on the internet. A realm is
// therefore accepted only on the registry's own host, on a host of the same
// registrable domain (registry-1.docker.io → auth.docker.io, both
// docker.io; registry.gitlab.com → gitlab.com), or on an address the
// operator allowed (Config.AllowRealms, HOST[:PORT]). The dial policy
// applies to realms as to everything else, with one difference: token
// requests have a transport of their own, whose dialer also trusts the
// allowed realms' addresses, and the fetch transport trusts none of them.
//
// The check is made on the token request itself, not on the challenge text:
// go-containerregistry parses the challenge, and checking the URL it then
// asks for leaves no room for the two parsers to disagree. Every request an
// identity's transport sends is one of three things: to the registry's own
// host (pings and fetches), a redirect hop (which net/http marks with the
// redirect response, Request.Response), or a token request. So a request
// that is neither for the registry's host nor a redirect hop is a token
// request, and its host is the realm's. "The registry's host" is its exact
// host:port: a realm on another port of the same host is another server.

// realmPolicy decides which realm addresses a registry may name.
type realmPolicy struct {
	addrs map[string]bool // canonical host:port allowed for every registry (see addrKey)
	hosts map[string]bool // canonical hosts allowed on their scheme's default port
}

// newRealmPolicy parses AllowRealms entries, HOST[:PORT], a missing port
// meaning the default port of the realm URL's scheme.
func newRealmPolicy(entries []string) (realmPolicy, error) {
	p := realmPolicy{addrs: make(map[string]bool), hosts: make(map[string]bool)}
	for _, e := range entries {
		host, port, err := parseHostPort(e, "")
		if err != nil {
			return realmPolicy{}, fmt.Errorf("upstream: allowed realm %w", err)
		}
		if port == "" {
			p.hosts[host] = true
		} else {
			p.addrs[addrKey(host, port)] = true
		}
	}
	return p, nil
}

// allows reports whether the operator allowed realm, a token request's URL.
func (p realmPolicy) allows(realm *url.URL) bool {
	host, port := urlAddr(realm)
	return p.addrs[addrKey(host, port)] || (p.hosts[host] && port == defaultPort(realm.Scheme))
}

// check returns nil when the token request URL realm may serve tokens for
// the registry whose base URL has registryHost (a host name or IP
// address, without port), else a refusal.
func (p realmPolicy) check(registry, registryHost string, realm *url.URL) error {
	if realmAllowed(registryHost, realm.Hostname()) || p.allows(realm) {
		return nil
	}
	return refusal(registry, fmt.Sprintf("token realm %.100q is neither on %s nor of its registrable domain, nor allowed", realm.Host, registryHost))
}

// realmAllowed reports whether realmHost is registryHost or shares its
// registrable domain (public suffix plus one label, from the public suffix
// list, so registry.example.co.uk and evil.co.uk do not match, nor do two
// users' hosts under a shared suffix such as github.io). IP addresses match
// only themselves.
func realmAllowed(registryHost, realmHost string) bool {
	a, b := canonicalHost(registryHost), canonicalHost(realmHost)
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	if isIP(a) || isIP(b) {
		return false
	}
	da, errA := publicsuffix.EffectiveTLDPlusOne(a)
	db, errB := publicsuffix.EffectiveTLDPlusOne(b)
	return errA == nil && errB == nil && da == db
}

func isIP(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}

// realmGuard sits between go-containerregistry's transport and the
// Client's, for one identity. Token requests go to the realm transport,
// which alone trusts the allowed realms, after the policy has allowed
// them, before anything is dialled; everything else (pings, fetches,
// redirect hops) goes to the fetch transport, which does not trust realm
// addresses at all, so that neither a redirect nor a pooled connection can
// reach a realm's address with anything but a token request.
type realmGuard struct {
	inner        http.RoundTripper // the fetch chain
	realm        http.RoundTripper // the token chain
	policy       realmPolicy
	registry     string // canonical name, for the error
	registryAddr string // canonical host:port of the registry's base URL
}

func (g realmGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Response != nil || addrKey(urlAddr(req.URL)) == g.registryAddr {
		return g.inner.RoundTrip(req)
	}
	host, _, _ := net.SplitHostPort(g.registryAddr)
	if err := g.policy.check(g.registry, host, req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, err
	}
	return g.realm.RoundTrip(req)
}
