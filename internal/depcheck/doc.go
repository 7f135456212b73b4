// Package depcheck holds the test that keeps cacheyd's layering: which
// cacheyd packages each package may import (flight and retry nothing but
// oci; the tiers neither flight nor cache; cache neither upstream nor
// server, nor a tier's implementation, which internal/app opens for it;
// internal/peerauth, the cluster secret's proofs, is a leaf both
// server and cluster use), and that fasthttp is only in server, ristretto
// only in tier/memory and kong only in cmd. Beside it, the tests that keep
// the cacheyd binary what ships: no benchmark, no test registry or fake,
// no module only the tests use, and every module it links named, with
// why, in README.md.
package depcheck
