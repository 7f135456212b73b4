package node

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Marker is the first line of every hosts.toml cacheyd writes: what makes
// a file cacheyd's, to update and to remove, and nobody else's.
const Marker = "# cacheyd node: this file is cacheyd's; cacheyd node --remove removes it, cacheyd node rewrites it"

// createdDirLine, the second line, says that cacheyd also made the file's
// directory, so that --remove takes the directory away too when it is left
// empty, and leaves alone a directory someone else made.
const createdDirLine = "# cacheyd node: cacheyd made this directory"

// FileName is the name containerd reads in each directory.
const FileName = "hosts.toml"

// HostDirectory is the directory containerd looks in for registry host
// ("host:port" is spelled "host_port_", as containerd spells it).
func HostDirectory(host string) string {
	if i := strings.LastIndex(host, ":"); i > 0 {
		return host[:i] + "_" + host[i+1:] + "_"
	}
	return host
}

// portDirRE is a directory named for a host and port.
var portDirRE = regexp.MustCompile(`^(.+)_(\d+)_$`)

// hostOfDirectory is HostDirectory's inverse: the registry a directory
// below the certs dir is read for.
func hostOfDirectory(dir string) string {
	if m := portDirRE.FindStringSubmatch(dir); m != nil {
		return m[1] + ":" + m[2]
	}
	return dir
}

// mirrorURL checks and normalises the mirror's address: a scheme and a
// host, no path (containerd adds /v2 and the ns parameter itself).
func mirrorURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("mirror %q: want http://HOST:PORT or https://HOST:PORT", s)
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "v2" || u.RawQuery != "" {
		return "", fmt.Errorf("mirror %q: want no path or query (containerd adds /v2 and ns itself)", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// upstreamServer is where containerd goes for registry when no mirror
// answers, spelled as containerd's own default (docker.io is served by
// registry-1.docker.io).
func upstreamServer(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + registry
}

// render is the hosts.toml for registry ("" for _default) pointing at
// mirror. The mirror is asked for pulls and tag resolution only: pushes go
// to the registry. Without fallback the file's server is the mirror
// itself, since containerd fills a missing server with the registry.
func render(mirror, registry string, noFallback, createdDir bool) []byte {
	var b bytes.Buffer
	b.WriteString(Marker + "\n")
	if createdDir {
		b.WriteString(createdDirLine + "\n")
	}
	switch {
	case noFallback:
		b.WriteString("# No fallback: containerd goes nowhere else when the mirror fails.\n")
		fmt.Fprintf(&b, "server = %q\ncapabilities = [\"pull\", \"resolve\"]\n", mirror)
		return b.Bytes()
	case registry != "":
		fmt.Fprintf(&b, "server = %q\n", upstreamServer(registry))
	default:
		b.WriteString("# No server line: containerd falls back to each image's own registry.\n")
	}
	fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror)
	return b.Bytes()
}

// isOurs reports whether content is a file cacheyd wrote.
func isOurs(content []byte) bool {
	first, _, _ := bytes.Cut(content, []byte("\n"))
	return string(bytes.TrimRight(first, "\r")) == Marker
}

// madeDir reports whether our file says cacheyd made its directory.
func madeDir(content []byte) bool {
	_, rest, _ := bytes.Cut(content, []byte("\n"))
	second, _, _ := bytes.Cut(rest, []byte("\n"))
	return string(bytes.TrimRight(second, "\r")) == createdDirLine
}
