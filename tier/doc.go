// Package tier is cacheyd's read path: a memory tier (ristretto) for
// manifests and small blobs, a content-addressed disk tier for everything,
// fills in flight that many readers stream while one upstream fetch writes
// them, and tag resolution with a freshness window.
//
// Digest-addressed content is looked up memory → disk → fill in flight →
// new fill. Tags, the only mutable thing, are resolved upstream with a HEAD
// when the last answer is older than the tag TTL.
//
// tier knows nothing of HTTP servers: it takes an oci.Request and answers an
// Object. What it needs from upstream it declares as Origin.
package tier
