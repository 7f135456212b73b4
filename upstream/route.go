package upstream

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/cacheyd/cacheyd/oci"
)

// target is where one request goes: the registry's canonical name (for
// metrics, credentials and the identity cache), its base URL and the
// repository within it.
type target struct {
	registry string
	base     *url.URL // scheme and host only
	repo     string
}

// url is the distribution API URL of req at the target: a manifest, a
// blob, or a listing with its query.
func (t target) url(req *oci.Request) string {
	base := t.base.Scheme + "://" + t.base.Host + "/v2/" + t.repo
	var u string
	switch req.Kind {
	case oci.KindManifest:
		u = base + "/manifests/" + req.Reference.String()
	case oci.KindTags:
		u = base + "/tags/list"
	case oci.KindReferrers:
		u = base + "/referrers/" + req.Reference.String()
	default:
		u = base + "/blobs/" + req.Reference.String()
	}
	if q := req.List.Encode(); q != "" {
		u += "?" + q
	}
	return u
}

// parseRegistryURLs validates the operator's map and keys it by canonical
// registry name.
func parseRegistryURLs(m map[string]string) (map[string]*url.URL, error) {
	out := make(map[string]*url.URL, len(m))
	for name, raw := range m {
		reg, err := oci.NormalizeRegistry(name)
		if err != nil {
			return nil, fmt.Errorf("upstream: registry URL for %q: %w", name, err)
		}
		u, err := parseBaseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("upstream: registry URL for %s: %w", reg, err)
		}
		if prev, dup := out[reg]; dup && prev.String() != u.String() {
			return nil, fmt.Errorf("upstream: registry %s mapped twice (%s, %s)", reg, prev, u)
		}
		out[reg] = u
	}
	return out, nil
}

// parseBaseURL accepts scheme://host[:port] with an optional trailing slash.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%.100q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%.100q: scheme must be http or https", raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%.100q: no host", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("%.100q: only scheme, host and port are allowed", raw)
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("%.100q: a path prefix is not supported", raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host)}, nil
}

// route validates req and finds where it goes. Every refusal is an
// *oci.Error: a malformed request is the caller's bug (400/405), a registry
// the policy refuses is 403 DENIED.
func (c *Client) route(req *oci.Request) (target, error) {
	if req.Method != "GET" && req.Method != "HEAD" {
		return target{}, oci.ErrUnsupported(fmt.Sprintf("upstream: method %.10q", req.Method))
	}
	switch req.Kind {
	case oci.KindManifest:
		if req.Reference.Digest == "" && !oci.ValidTag(req.Reference.Tag) {
			return target{}, oci.ErrManifestInvalid("upstream: invalid manifest reference")
		}
	case oci.KindBlob, oci.KindReferrers:
		if req.Reference.Digest == "" {
			return target{}, oci.ErrDigestInvalid("upstream: " + req.Kind.String() + " request without digest")
		}
	case oci.KindTags:
		if req.Reference != (oci.Reference{}) {
			return target{}, oci.ErrNameInvalid("upstream: a tag list takes no reference")
		}
	default:
		return target{}, oci.ErrUnsupported("upstream: only manifests, blobs, tag lists and referrers are fetched, not " + req.Kind.String())
	}
	if err := req.List.Validate(req.Kind); err != nil {
		return target{}, err
	}
	if d := req.Reference.Digest; d != "" {
		// A Digest can be made by conversion; it goes into a URL, so check it.
		if _, err := oci.ParseDigest(string(d)); err != nil {
			return target{}, oci.ErrDigestInvalid(err.Error())
		}
	}
	if !validHeaderValue(req.Authorization) {
		return target{}, badHeader("Authorization")
	}
	for _, a := range req.Accept {
		if !validHeaderValue(a) {
			return target{}, badHeader("Accept")
		}
	}
	switch {
	case req.Offset < 0 || req.Length < 0 || req.Suffix < 0:
		return target{}, &oci.Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid, Message: "upstream: negative range"}
	case req.Suffix > 0 && (req.Offset != 0 || req.Length != 0):
		return target{}, &oci.Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid, Message: "upstream: a suffix range with an offset"}
	}
	if !oci.ValidName(req.Repository) {
		return target{}, oci.ErrNameInvalid("upstream: invalid repository name")
	}
	reg, err := oci.NormalizeRegistry(req.Registry)
	if err != nil {
		return target{}, oci.ErrNameInvalid("upstream: " + err.Error())
	}
	if err := c.registries.Check(reg); err != nil {
		return target{}, err
	}
	t := target{registry: reg, repo: req.Repository}
	if u, ok := c.urls[reg]; ok {
		t.base = u
		return t, nil
	}
	if reg == oci.DockerHub {
		t.base = &url.URL{Scheme: "https", Host: oci.DockerHubAPI}
	} else {
		t.base = &url.URL{Scheme: "https", Host: reg}
	}
	host, port := urlAddr(t.base)
	if c.trust.allowed[addrKey(host, port)] {
		return t, nil // named by the operator: private addresses and all
	}
	// A registry the client named, not the operator. Anything that could
	// reach into cacheyd's network by address is refused here, before any
	// lookup; a name that resolves to a private address is refused by the
	// dialer, before it connects.
	switch {
	case ipLike(host):
		return target{}, refusal(reg, "an IP address is not accepted as registry name unless configured")
	case isLocalhost(host):
		return target{}, refusal(reg, "localhost is not accepted as registry name unless configured")
	case c.trust.hosts[host]:
		return target{}, refusal(reg, "a configured host is reachable only as configured (registry name, port)")
	}
	return t, nil
}

// isLocalhost reports whether host is a name that always means this machine
// (RFC 6761): localhost and any name under .localhost.
func isLocalhost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// ipLike reports whether host is an IP address in any spelling a resolver
// might accept: a literal, or a name whose last label is numeric ("127.1",
// "2130706433", "0x7f000001"), which no real top-level domain is.
func ipLike(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") {
		return true
	}
	return strings.Trim(last, "0123456789") == ""
}

func badHeader(name string) *oci.Error {
	return &oci.Error{Status: http.StatusBadRequest, Code: oci.CodeUnsupported, Message: "upstream: malformed " + name}
}

// validHeaderValue reports whether s can be sent as a header value as it is:
// no control characters, so nothing a client passes on can split a header.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
