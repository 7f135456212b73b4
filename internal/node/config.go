// Package node writes, checks and removes the mirror configuration a node's
// containerd reads (hosts.toml files below its certs.d directory), so that
// containerd pulls through cacheyd. The meaning of a hosts.toml is never read
// here by hand: it is asked of containerd's own host resolution
// (remotes/docker/config), the code containerd runs on every pull.
package node

import "errors"

// DefaultCertsDir is where containerd's CRI plugin reads hosts.toml files
// when its config_path says so, as most distributions and the docs set it.
const DefaultCertsDir = "/etc/containerd/certs.d"

// DefaultDir is the directory containerd 1.7 and later read for every
// registry that has no directory of its own; 1.6 has none.
const DefaultDir = "_default"

// Config says what to write and where.
type Config struct {
	// CertsDir is containerd's config_path; empty means DefaultCertsDir.
	CertsDir string
	// Mirror is cacheyd's address as the node reaches it
	// (http://127.0.0.1:30123). Configure requires it; Remove does not.
	Mirror string
	// Registries are the registries given a directory of their own
	// (docker.io, ghcr.io, 127.0.0.1:5000). containerd 1.6 needs them, having
	// no _default; on 1.7 and later they are written besides _default, which
	// a registry's own directory would otherwise shadow.
	Registries []string
	// Version is containerd's; the zero Version is refused by Configure
	// (DetectVersion finds it when containerd is on PATH).
	Version Version
	// NoFallback leaves containerd no way to the registry when cacheyd
	// fails: the file's server is cacheyd too. The zero value keeps
	// containerd's fallback to the registry, so a cacheyd that is down costs
	// the pulls nothing.
	NoFallback bool
	// ContainerdSocket is containerd's socket, which Check asks what its
	// CRI plugin reads (Status, verbose); "" skips that question.
	ContainerdSocket string
}

// certsDir is c.CertsDir or the default.
func (c Config) certsDir() string {
	if c.CertsDir == "" {
		return DefaultCertsDir
	}
	return c.CertsDir
}

// ErrNoDefault is returned for containerd 1.6 without named registries:
// it reads no _default directory, so nothing written would be used.
var ErrNoDefault = errors.New("containerd before 1.7 reads no _default directory: name the registries (--registries docker.io,ghcr.io,...)")

// dirs are the directories below the certs dir that c configures, each
// with the registry it is for ("" for _default).
func (c Config) dirs() ([]target, error) {
	var out []target
	if c.Version.HasDefault() {
		out = append(out, target{dir: DefaultDir})
	} else if len(c.Registries) == 0 {
		return nil, ErrNoDefault
	}
	for _, r := range c.Registries {
		out = append(out, target{dir: HostDirectory(r), registry: r})
	}
	return out, nil
}

// target is one directory to configure: its name below the certs dir and
// the registry it serves ("" for _default, which serves every other).
type target struct {
	dir, registry string
}
