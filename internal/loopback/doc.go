// Package loopback runs the real clients and daemons of cacheyd's
// end-to-end tests (containerd, podman, skopeo) where host names resolve
// only to loopback, so that no misread configuration, no fallback to "the
// registry itself" and no default registry can reach past this machine.
//
// A Confinement's Command wraps a program in a mount namespace of its own
// (util-linux's unshare) whose /etc/resolv.conf names only a loopback
// nameserver, whose
// /etc/hosts knows only localhost and the names a test gives it, all on
// 127.0.0.1, and whose /etc/nsswitch.conf reads those two and nothing else
// (no mDNS, no systemd-resolved). The namespace ends with the program; the
// machine's own files are untouched. Tests name their images on loopback
// too (localhost:<port>, or a name under .localhost that the hosts file
// maps to 127.0.0.1), so even a client that went around the mirror would
// reach only a port on this machine.
//
// Need is the rule for a real component a test cannot run without: a test
// skips with a message saying how to get it, except under CI=true, where a
// missing component fails the test, so that CI never passes without
// running it.
package loopback
