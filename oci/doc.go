// Package oci holds the small vocabulary every other package of cacheyd speaks:
// digests, repository names and references, request paths of the distribution
// API, registry names, the errors a registry answers with, and the plain
// request/response pair with which the cache asks an origin for content.
//
// It is a leaf: it imports nothing of cacheyd and no HTTP framework, so the
// server, the tiers and the upstream client can share it without importing
// each other.
package oci
