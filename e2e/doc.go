// Package e2e holds cacheyd's end-to-end tests: a real containerd, told by a
// hosts.toml to use a real cacheyd binary as its mirror, pulls images that
// cacheyd fetches from a fake registry on loopback (internal/registrytest,
// demanding tokens and redirecting blobs to a second host like Docker Hub).
//
// The tests prove what a node operator relies on: a pull through the mirror
// succeeds with every digest verified by containerd, upstream sees each blob
// once, and a second pull of the same image costs upstream no blob at all.
//
// They need containerd and ctr on PATH and root (see internal/containerdtest);
// without them they are skipped, except under CI=true, where they fail. They
// build cmd/cacheyd with the go command that runs them. Everything listens on
// loopback; no test reaches a real registry.
package e2e
