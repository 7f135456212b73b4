// Package containerdtest runs a private containerd daemon for end-to-end tests
// and drives it with ctr, the way a Kubernetes node's containerd would use a
// registry mirror.
//
// Each daemon has its own root, state directory and gRPC socket, loads only
// the plugins a pull needs (content store, metadata, the native snapshotter
// and their services), and is stopped by its PID when the test ends. Nothing
// needs a kernel feature beyond plain files, so it runs in containers and CI
// sandboxes where overlayfs, cgroups or runc are unavailable.
//
// Debian's containerd 1.6 is found on PATH; containerd 2, built from
// source, in the directory V2Env names (Config.Bin). For containerd 2 the
// daemon pulls (ctr asks its transfer service), so the transfer plugin is
// configured: unpacking into the native snapshotter, and Config's
// config_path, max_concurrent_downloads and concurrent_layer_fetch_buffer.
// With Config.CRI the CRI plugin is on too, as on a Kubernetes node, its
// registry config_path set to Config.HostsDir, so that crictl
// (CRIEndpoint) pulls the way the kubelet does. The daemon and every ctr
// command run where names resolve only to loopback (package loopback).
//
// Pulls go through a hosts directory written by WriteHostsDir (per
// registry) or WriteDefaultHostsDir (_default only). containerd 1.6
// reads <dir>/<registry>/hosts.toml (it does not read <dir>/_default), and it
// silently ignores a hosts.toml whose mirror is not a [host."..."] table,
// going straight to the registry instead; WriteHostsDir always writes the
// mirror as a [host] table. containerd adds ?ns=<registry> to every request it
// sends to a mirror.
//
// When containerd or ctr is not installed, or the test does not run as root,
// the tests that need them are skipped with a message, unless CI=true, where
// they fail instead.
package containerdtest
