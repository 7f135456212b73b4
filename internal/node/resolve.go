package node

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// Host is one place containerd would try for a registry, in its order.
type Host struct {
	// URL is scheme://host/path, as containerd will request it
	// (http://127.0.0.1:30123/v2).
	URL string `json:"url"`
	// NS says containerd sends ?ns=<registry> to this host, as it does to
	// every host that is not the registry itself.
	NS bool `json:"ns"`
	// Pull says the host is used for pulls and tag resolution.
	Pull bool `json:"pull"`
}

// Resolve asks containerd's host resolution, reading certsDir as
// containerd v does on each pull, which hosts it tries for registry, first
// first. A file containerd cannot parse is ignored, as containerd ignores
// it; a certificate it cannot load fails, as containerd's pulls do.
func Resolve(ctx context.Context, certsDir string, v Version, registry string) ([]Host, error) {
	ctx = quiet(ctx)
	hostDir := config.HostDirFromRoot(certsDir)
	if !v.HasDefault() {
		// Before 1.7 containerd reads only the registry's own directory.
		all := hostDir
		hostDir = func(host string) (string, error) {
			dir, err := all(host)
			if err == nil && filepath.Base(dir) == DefaultDir {
				return "", errdefs.ErrNotFound
			}
			return dir, err
		}
	}
	hosts, err := config.ConfigureHosts(ctx, config.HostOptions{HostDir: hostDir})(registry)
	if err != nil {
		return nil, fmt.Errorf("resolve %s in %s: %w", registry, certsDir, err)
	}
	out := make([]Host, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, Host{
			URL:  h.Scheme + "://" + h.Host + h.Path,
			NS:   isProxy(h.Host, registry),
			Pull: h.Capabilities.Has(docker.HostCapabilityPull) && h.Capabilities.Has(docker.HostCapabilityResolve),
		})
	}
	return out, nil
}

// isProxy is the rule by which containerd's resolver adds ?ns=: the host
// is not the registry (docker.io being registry-1.docker.io).
func isProxy(host, registry string) bool {
	return host != registry && !(registry == "docker.io" && host == "registry-1.docker.io")
}

// quiet gives containerd's code a logger that prints nothing: a file
// containerd cannot parse is reported by Check, not by containerd's own
// log line on the command's output.
func quiet(ctx context.Context) context.Context {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return log.WithLogger(ctx, logrus.NewEntry(l))
}
