package containerdtest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config tunes StartWith. The zero value is what most tests want.
type Config struct {
	// Namespace is the containerd namespace Ctr works in. "" means "test".
	Namespace string
	// StartTimeout bounds how long StartWith waits for the daemon to answer
	// on its socket. 0 means 30 seconds.
	StartTimeout time.Duration
	// CommandTimeout bounds each ctr command. 0 means 2 minutes.
	CommandTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = "test"
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 2 * time.Minute
	}
	return c
}

// Snapshotter is the snapshotter ctr unpacks into. native copies files and
// works on any filesystem without privileges beyond the daemon's; overlayfs
// needs a kernel and mount rights a sandbox may not grant.
const Snapshotter = "native"

// daemonConfig renders a containerd config.toml (version 2) that keeps every
// file the daemon writes under root and state and listens on socket.
func daemonConfig(root, state, socket string) string {
	// Plugins a pull does not need and that need kernel features, devices or
	// privileges a test sandbox may lack (or that write outside the daemon's
	// root, like opt's /opt/containerd). A containerd version ignores names
	// it does not have.
	disabled := []string{
		"io.containerd.grpc.v1.cri",
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.snapshotter.v1.overlayfs",
		"io.containerd.runtime.v1.linux",
		"io.containerd.runtime.v2.task",
		"io.containerd.monitor.v1.cgroups",
		"io.containerd.service.v1.tasks-service",
		"io.containerd.grpc.v1.tasks",
		"io.containerd.internal.v1.restart",
		"io.containerd.internal.v1.opt",
	}
	// Required plugins make the daemon exit at start, with the reason in its
	// log, instead of failing a later pull in a confusing way.
	required := []string{
		"io.containerd.grpc.v1.content",
		"io.containerd.grpc.v1.images",
		"io.containerd.grpc.v1.leases",
		"io.containerd.grpc.v1.namespaces",
		"io.containerd.grpc.v1.snapshots",
		"io.containerd.snapshotter.v1." + Snapshotter,
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = 2\nroot = %s\nstate = %s\n", strconv.Quote(root), strconv.Quote(state))
	fmt.Fprintf(&b, "disabled_plugins = %s\n", tomlList(disabled))
	fmt.Fprintf(&b, "required_plugins = %s\n", tomlList(required))
	fmt.Fprintf(&b, "\n[grpc]\n  address = %s\n", strconv.Quote(socket))
	fmt.Fprintf(&b, "\n[ttrpc]\n  address = %s\n", strconv.Quote(socket+".ttrpc"))
	// No debug socket and no metrics listener: nothing but the gRPC socket.
	b.WriteString("\n[debug]\n  address = \"\"\n  level = \"info\"\n")
	b.WriteString("\n[metrics]\n  address = \"\"\n")
	return b.String()
}

// tomlList renders strings as a TOML array. strconv.Quote's escapes are valid
// TOML for the plain paths and names used here.
func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
