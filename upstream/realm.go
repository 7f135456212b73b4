package upstream

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Token realms. A registry's Bearer challenge names the realm where cacheyd
// exchanges its credentials (or none) for a token, so a registry that could
// name any realm could make cacheyd send its credentials for that registry
// anywhere, and make it request any URL on the internet. A realm is
// therefore accepted only on the registry's own host, on a host of the same
// registrable domain (registry-1.docker.io → auth.docker.io, both
// docker.io; registry.gitlab.com → gitlab.com), or on a host the operator
// allowed (Config.AllowRealms). The dial policy applies to realms as to
// everything else.
//
// The check is made on the token request itself, not on the challenge text:
// go-containerregistry parses the challenge, and checking the URL it then
// asks for leaves no room for the two parsers to disagree. Every request an
// identity's transport sends is one of three things: to the registry's own
// host (pings and fetches), a redirect hop (which net/http marks with the
// redirect response, Request.Response), or a token request. So a request
// that is neither for the registry's host nor a redirect hop is a token
// request, and its host is the realm's.

// realmPolicy decides which realm hosts a registry may name.
type realmPolicy struct {
	allowed map[string]bool // canonical hosts (see canonicalHost) allowed for every registry
}

func newRealmPolicy(hosts []string) realmPolicy {
	p := realmPolicy{allowed: make(map[string]bool, len(hosts))}
	for _, h := range hosts {
		p.allowed[canonicalHost(h)] = true
	}
	return p
}

// check returns nil when realmHost may serve tokens for the registry whose
// base URL has registryHost (both host names or IP addresses, without
// port), else a refusal.
func (p realmPolicy) check(registry, registryHost, realmHost string) error {
	if realmAllowed(registryHost, realmHost) || p.allowed[canonicalHost(realmHost)] {
		return nil
	}
	return refusal(registry, fmt.Sprintf("token realm host %.100q is neither %s nor of its registrable domain", realmHost, registryHost))
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
// Client's, for one identity, and refuses token requests to realms the
// policy does not allow, before anything is dialled.
type realmGuard struct {
	inner        http.RoundTripper
	policy       realmPolicy
	registry     string // canonical name, for the error
	registryHost string // host of the registry's base URL, without port
}

func (g realmGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	if req.Response == nil && !strings.EqualFold(host, g.registryHost) {
		if err := g.policy.check(g.registry, g.registryHost, host); err != nil {
			if req.Body != nil {
				req.Body.Close() // a RoundTripper closes the body, even on error
			}
			return nil, err
		}
	}
	return g.inner.RoundTrip(req)
}
