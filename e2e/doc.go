// Package e2e holds cacheyd's end-to-end tests: a real containerd, told by a
// hosts.toml to use a real cacheyd binary as its mirror, pulls images that
// cacheyd fetches from a fake registry on loopback (internal/registrytest,
// demanding tokens and redirecting blobs to a second host like Docker Hub).
//
// The tests prove what a node operator relies on: a pull through the mirror
// succeeds with every digest verified by containerd, upstream sees each blob
// once, and a second pull of the same image costs upstream no blob at all.
//
// The clients are the real ones, each a test of its own:
//
//   - containerd 1.6 (Debian's), with a per-registry hosts.toml and ?ns=;
//   - containerd 2 built from source (internal/containerdtest.V2Env), the
//     daemon pulling through its transfer service, a hosts directory that
//     holds only _default/hosts.toml, and layers fetched as parallel
//     chunks (Range requests); cold, then into an emptied content store
//     with no blob upstream;
//   - podman (Debian's) with a registries.conf mirror at
//     <cacheyd>/<registry>, the path-prefix route without ns, into a vfs
//     store of its own;
//   - skopeo (Debian's): copy --all of a multi-platform index and inspect
//     through that mirror, and list-tags through cacheyd, following the
//     registry's pages by the Links cacheyd rewrites;
//   - crictl (CACHEYD_CRICTL), the kubelet's path: containerd 1.6's and
//     2's CRI plugin pull through the hosts.toml cacheyd node writes, and
//     straight from the registry once cacheyd node --remove took it away;
//   - regctl (CACHEYD_REGCTL), told by regctl registry set that cacheyd
//     is the registry's mirror, which it names by the ?ns= it sends
//     itself: image copy into an OCI layout, then again with no blob
//     upstream.
//
// One more real component is a registry: the CNCF distribution registry, a
// process of its own (CACHEYD_REGISTRY_BIN), is the alternate that serves a
// cold containerd 2 pull by digest while the registry has no pull left.
//
// They need those programs and root; without them they are skipped, except
// under CI=true, where they fail. They build cmd/cacheyd with the go
// command that runs them. Everything listens on loopback, every image is
// named on loopback, and every client and daemon runs where names resolve
// only to loopback (internal/loopback): no test reaches a real registry,
// not even by a fallback.
package e2e
