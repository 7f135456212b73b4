// Package tier says what a storage tier of cacheyd's cache is: content by
// digest with its record (Entry), behind the small Tier interface. The
// tiers live in its subpackages: memory (ristretto, for manifests and small
// blobs) and disk (content-addressed files, durable, under a byte budget);
// tiertest is the conformance suite every tier passes, so that another (an
// S3-compatible object store) can be dropped in.
//
// tier holds no fills, no HTTP and no policy: which content goes in which
// tier, and who may read it, is the cache's business.
package tier
