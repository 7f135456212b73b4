package cluster

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/cacheyd/cacheyd/oci"
)

// Rendezvous (highest random weight) hashing: every member gets a weight
// for a key, a hash of the two, and the members ranked by weight are the
// key's owner and its fallbacks in order. Every replica computes the same
// ranking from the same members with no coordination, and a member that
// joins or leaves changes the owner only of the keys it wins or won: a
// resize moves 1/N of the keys, never all of them (as "hash mod N" would).
//
// It is written here rather than taken from a library because the cluster
// needs the whole ranking (the owner's fallbacks), not only the winner, and
// it is a dozen lines over xxhash.

// weight is member's weight for key.
func weight(member, key string) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(member)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(key)
	return d.Sum64()
}

// Rank returns members ordered for key (a digest, or
// registry/repository:tag), owner first, as every replica ranks them.
// Ties (which need a 64-bit collision) are broken by address, so the
// order is total.
func Rank(members []string, key string) []string {
	type weighted struct {
		m string
		w uint64
	}
	ws := make([]weighted, len(members))
	for i, m := range members {
		ws[i] = weighted{m, weight(m, key)}
	}
	slices.SortFunc(ws, func(a, b weighted) int {
		switch {
		case a.w > b.w:
			return -1
		case a.w < b.w:
			return 1
		}
		return cmp.Compare(a.m, b.m)
	})
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.m
	}
	return out
}

// keyOf is what a request is owned by: its digest, or for a manifest by
// tag (whose HEAD resolves it) registry/repository:tag, since a tag's
// answer differs between registries and repositories and a digest's never
// does.
func keyOf(req *oci.Request) string {
	if req.Reference.IsDigest() {
		return string(req.Reference.Digest)
	}
	return req.Registry + "/" + req.Repository + ":" + req.Reference.Tag
}
