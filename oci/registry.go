package oci

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DockerHub is the canonical name of Docker Hub's registry. Its aliases
// (index.docker.io, registry-1.docker.io) are folded into it so that one
// cached manifest serves every spelling.
const DockerHub = "docker.io"

// DockerHubAPI is the host Docker Hub's distribution API answers on.
const DockerHubAPI = "registry-1.docker.io"

// MaxRegistryLength bounds a registry host[:port].
const MaxRegistryLength = 253 + 6

// NormalizeRegistry validates a registry name (host or host:port, as sent in
// ?ns= or as a path prefix) and returns its canonical lower-case form, with
// Docker Hub's aliases folded into DockerHub. It checks the form only; which
// hosts may be reached is the upstream client's decision.
func NormalizeRegistry(s string) (string, error) {
	if s == "" || len(s) > MaxRegistryLength {
		return "", fmt.Errorf("registry %.80q: empty or too long", s)
	}
	s = strings.ToLower(s)
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		// A bracketed IPv6 literal; the form is valid, policy may refuse it.
		end := strings.IndexByte(s, ']')
		if end < 0 || net.ParseIP(s[1:end]) == nil {
			return "", fmt.Errorf("registry %.80q: bad IPv6 literal", s)
		}
		host, port = s[:end+1], strings.TrimPrefix(s[end+1:], ":")
		if s[end+1:] != "" && !strings.HasPrefix(s[end+1:], ":") {
			return "", fmt.Errorf("registry %.80q: junk after IPv6 literal", s)
		}
	} else if h, p, ok := strings.Cut(s, ":"); ok {
		host, port = h, p
	}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", fmt.Errorf("registry %.80q: bad port", s)
		}
	}
	if !strings.HasPrefix(host, "[") && !validHostname(host) {
		return "", fmt.Errorf("registry %.80q: not a host name", s)
	}
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return DockerHub, nil
	}
	return s, nil
}

// validHostname checks RFC 1123 labels: letters, digits and inner hyphens.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// LooksLikeHost reports whether the first component of a path names a
// registry, by the rule Docker references use: it holds a dot or a colon, or
// it is "localhost".
func LooksLikeHost(component string) bool {
	return component == "localhost" || strings.ContainsAny(component, ".:")
}

// NormalizeRepository applies Docker Hub's rule that one-component names live
// under library/ ("alpine" is "library/alpine").
func NormalizeRepository(registry, name string) string {
	if registry == DockerHub && !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}
