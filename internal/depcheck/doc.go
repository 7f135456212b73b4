// Package depcheck holds the test that keeps cacheyd's layering: which
// cacheyd packages each package may import (flight and retry nothing but
// oci; the tiers neither flight nor cache; cache neither upstream nor
// server; internal/peerauth, the cluster secret's proofs, is a leaf both
// server and cluster use), and that fasthttp is only in server, ristretto
// only in tier/memory and kong only in cmd.
package depcheck
