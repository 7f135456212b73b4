package containerdtest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
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
	// Bin is the directory holding the containerd and ctr to run (see
	// V2Bin); "" finds them on PATH (Debian's containerd 1.6).
	Bin string
	// CRI turns on the CRI plugin, the kubelet's way into containerd
	// (crictl against Containerd.CRIEndpoint), with its tasks service and
	// runtime loaded (a sandbox is never run: no CNI is configured), its
	// images unpacked into the native snapshotter and its registry
	// config_path set to HostsDir.
	CRI bool

	// The transfer service's settings, containerd 2 only (containerd 1.x
	// pulls in ctr itself and has no such plugin). Zero values leave
	// containerd's defaults.

	// HostsDir is the transfer plugin's config_path: the hosts.toml
	// directory for pulls whose client names none.
	HostsDir string
	// MaxConcurrentDownloads is max_concurrent_downloads: the blobs, and
	// the chunks of one, fetched at once.
	MaxConcurrentDownloads int
	// ConcurrentLayerFetchBuffer is concurrent_layer_fetch_buffer: from
	// 512 bytes on, a layer larger than it is fetched as chunks of this
	// many bytes, MaxConcurrentDownloads at once (HTTP Range requests).
	ConcurrentLayerFetchBuffer int
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

// daemonConfig renders a containerd config.toml that keeps every file the
// daemon writes under root and state and listens on socket: version 2 for
// containerd 1.x, version 3 for 2.x (whose plugins have other names, and
// whose transfer service unpacks into the native snapshotter here).
func daemonConfig(major int, root, state, socket string, cfg Config) string {
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
	if cfg.CRI {
		// The CRI plugin fails to load without the task service, which
		// needs the runtimes and task monitors.
		disabled = slices.DeleteFunc(disabled, func(p string) bool { return slices.Contains(criNeeds, p) })
	}
	version := 2
	if major >= 2 {
		version = 3
		disabled = append(disabled,
			"io.containerd.cri.v1.images",
			"io.containerd.cri.v1.runtime",
			"io.containerd.snapshotter.v1.erofs",
			"io.containerd.snapshotter.v1.blockfile",
			"io.containerd.monitor.task.v1.cgroups",
			"io.containerd.monitor.container.v1.restart",
			"io.containerd.podsandbox.controller.v1.podsandbox",
			"io.containerd.grpc.v1.sandbox-controllers",
			"io.containerd.nri.v1.nri",
		)
		if cfg.CRI {
			disabled = slices.DeleteFunc(disabled, func(p string) bool { return slices.Contains(criNeeds, p) })
		}
		required = append(required, "io.containerd.grpc.v1.transfer", "io.containerd.transfer.v1.local")
	}
	if cfg.CRI {
		required = append(required, "io.containerd.grpc.v1.cri")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = %d\nroot = %s\nstate = %s\n", version, strconv.Quote(root), strconv.Quote(state))
	fmt.Fprintf(&b, "disabled_plugins = %s\n", tomlList(disabled))
	fmt.Fprintf(&b, "required_plugins = %s\n", tomlList(required))
	fmt.Fprintf(&b, "\n[grpc]\n  address = %s\n", strconv.Quote(socket))
	fmt.Fprintf(&b, "\n[ttrpc]\n  address = %s\n", strconv.Quote(socket+".ttrpc"))
	// No debug socket and no metrics listener: nothing but the gRPC socket.
	b.WriteString("\n[debug]\n  address = \"\"\n  level = \"debug\"\n")
	b.WriteString("\n[metrics]\n  address = \"\"\n")
	if major >= 2 {
		b.WriteString("\n[plugins.\"io.containerd.transfer.v1.local\"]\n")
		if cfg.HostsDir != "" {
			fmt.Fprintf(&b, "  config_path = %s\n", strconv.Quote(cfg.HostsDir))
		}
		if cfg.MaxConcurrentDownloads > 0 {
			fmt.Fprintf(&b, "  max_concurrent_downloads = %d\n", cfg.MaxConcurrentDownloads)
		}
		if cfg.ConcurrentLayerFetchBuffer > 0 {
			fmt.Fprintf(&b, "  concurrent_layer_fetch_buffer = %d\n", cfg.ConcurrentLayerFetchBuffer)
		}
		// The default unpacks into overlayfs, which is disabled here.
		fmt.Fprintf(&b, "\n[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]]\n  platform = %s\n  snapshotter = %s\n",
			strconv.Quote("linux/"+runtime.GOARCH), strconv.Quote(Snapshotter))
	}
	if cfg.CRI {
		b.WriteString(criConfig(major, filepath.Dir(socket), cfg.HostsDir))
	}
	return b.String()
}

// criNeeds are the plugins the CRI plugin needs loaded, of those a plain
// pull does without.
var criNeeds = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.runtime.v1.linux",
	"io.containerd.runtime.v2.task",
	"io.containerd.monitor.v1.cgroups",
	"io.containerd.monitor.task.v1.cgroups",
	"io.containerd.monitor.container.v1.restart",
	"io.containerd.service.v1.tasks-service",
	"io.containerd.grpc.v1.tasks",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.grpc.v1.sandbox-controllers",
}

// criConfig is the CRI plugin's section: images into the native
// snapshotter, hosts.toml from hostsDir, no AppArmor or SELinux, and CNI
// directories below dir that stay empty (no pod is run).
func criConfig(major int, dir, hostsDir string) string {
	images, rt := `"io.containerd.grpc.v1.cri"`, `"io.containerd.grpc.v1.cri"`
	cniBin := fmt.Sprintf("bin_dir = %s", strconv.Quote(filepath.Join(dir, "cni-bin")))
	snapshotter := "\n[plugins." + images + ".containerd]\n  snapshotter = " + strconv.Quote(Snapshotter) + "\n"
	if major >= 2 {
		images, rt = `"io.containerd.cri.v1.images"`, `"io.containerd.cri.v1.runtime"`
		cniBin = fmt.Sprintf("bin_dirs = [%s]", strconv.Quote(filepath.Join(dir, "cni-bin")))
		snapshotter = "\n[plugins." + images + "]\n  snapshotter = " + strconv.Quote(Snapshotter) + "\n"
	}
	var b strings.Builder
	b.WriteString(snapshotter)
	if hostsDir != "" {
		fmt.Fprintf(&b, "\n[plugins.%s.registry]\n  config_path = %s\n", images, strconv.Quote(hostsDir))
	}
	fmt.Fprintf(&b, "\n[plugins.%s]\n  disable_apparmor = true\n  enable_selinux = false\n", rt)
	fmt.Fprintf(&b, "\n[plugins.%s.cni]\n  %s\n  conf_dir = %s\n", rt, cniBin, strconv.Quote(filepath.Join(dir, "cni-conf")))
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
