// Package cluster makes cacheyd replicas fetch each digest and each tag
// from upstream once per cluster rather than once per replica. It owns the
// members (a static list, or the addresses of a headless Service's DNS name
// re-resolved), the owner of a key among them (rendezvous hashing, rank.go),
// and Origin: the origin a replica's cache fetches through, which asks the
// owner of a request's key over the owner's own /v2 API with the hop header
// (oci.HopHeader), falls back to the next member by rank and then to
// upstream, skips a member that failed for a while, and optionally puts a
// parent cacheyd before upstream.
//
// The steps, for a miss on replica R:
//
//  1. The key is the digest, or registry/repository:tag for a tag.
//  2. Members are ranked for the key, highest random weight first; the
//     first is its owner. A member joining or leaving moves only its own
//     keys.
//  3. If R owns the key, or the request came from a peer (it carries the
//     hop header: a request is never forwarded twice), R fetches itself:
//     from the parent if it has one, else (or when the parent fails) from
//     upstream.
//  4. Otherwise R asks the owner with the same ns, Accept, Range and the
//     client's Authorization; the owner coalesces every replica's request
//     into its one fill, and R streams the owner's bytes into its own fill,
//     which verifies the digest and keeps a copy.
//  5. An owner that cannot be reached, answers 5xx or breaks its body is
//     skipped for Config.Backoff, and the next member by rank is asked;
//     when that is R itself, R asks itself with the hop header, so that
//     R's own fill for the key is the one that every replica falling back
//     to R joins. A cut body is resumed by the cache's retry wrapper, which
//     asks this origin again from the bytes it has.
//
// A request only ever goes to a member ranked above the asking replica for
// its key (reaching itself in the ranking, a replica fetches), and weights
// do not depend on who else is a member: however the replicas' views of the
// members differ for a while, requests never go round in a circle.
//
// cluster knows members, owners and peers, never the cache's insides: it
// sees only oci.Request and oci.Response, like any origin. It adds Route
// (cache.Router), so that the cache never serves a peer's request from a
// fill that waits for a peer (at most one hop), nor lets a replica's
// request to itself join the fill waiting for it.
package cluster
