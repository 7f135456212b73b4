// Package depcheck holds the test that keeps cacheyd's layering: fasthttp
// only in server, ristretto only in tier, kong only in cmd, tier and
// upstream never importing each other, and leaf packages importing no
// cacheyd package above them.
package depcheck
