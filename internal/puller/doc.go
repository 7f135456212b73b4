// Package puller pulls images over the distribution API the way containerd
// does, for every part of cacheyd that stands in for a client: the tests'
// nodes, the benchmark's nodes and load clients, and cacheyd warm.
//
// It owns what such a client must know: the manifest and index model
// (go-containerregistry's v1 types), the choice of platforms from an index,
// resolving a tag with HEAD and fetching manifests by digest with
// containerd's Accept list, streaming blobs through their hash and resuming
// a broken download with "Range: bytes=N-", the ranged reads of a
// lazy-pulling snapshotter (BlobSuffix for a layer's footer, BlobRange for
// a window), the anonymous token flow, and the errors of all of it
// (StatusError, ErrDigestMismatch, ErrRange).
//
// A Puller talks to one base URL, either a cacheyd, naming the registry it
// means as ?ns=<registry> (Namespace) the way containerd asks a mirror, or
// a registry itself, answering its Bearer challenge (Tokens). Pull is a
// node's whole pull; Resolve, Image, Manifest and Blob are its steps, for
// callers that schedule the steps themselves.
package puller
