// Package sources decides where the bytes of a request may come from: one
// ordered list of sources per request class, written once (policy.go), and
// a route per piece of the cache's work that walks it (route.go).
//
// A source is a place bytes may come from, named from a small fixed set
// (Name: owner, parent, alternate, registry) that is also the source label
// of cacheyd_source_failures_total. The lists, by class:
//
//   - content by digest fetched as cacheyd: the key's owner among the
//     cluster's members (by rank; this replica's own place in the ranking
//     ends the owner's part, or is asked as a peer, see package cluster),
//     then the parent, then the alternates of the request's registry in
//     the operator's order (alternate.go), then the registry; in fallback
//     mode the registry first, the alternates only once it answers 429,
//     fails or is unreachable, or, for a manifest GET, while its pull
//     budget is below the reserve (fallback.go);
//   - a manifest by tag, fetched as cacheyd: the same without alternates
//     (a tag is the registry's word, and resolved by a HEAD it does not
//     count); with Set.AlternateTags, the alternates after the registry,
//     asked only once it fails and the cache holds no answer to serve
//     stale (alternatetags.go);
//   - anything fetched with a client's credentials: owner, parent,
//     registry, never an alternate (the owner
//     gets the credentials sealed and applies the same checks);
//   - a peer's request (oci.Request.FromPeer): the parent, then, for
//     content by digest without a client's credentials, the alternates,
//     then the registry (and for a tag, the alternates after it as
//     above); never a member again, so that a request makes one
//     hop. This replica fetches for the cluster there, as it would for
//     itself, so alternates spare the registry the cluster's pulls too;
//   - a listing (tags, referrers): the registry only.
//
// A source that fails in its own right (unreachable, a failure of its own,
// an answer no such source gives, a stall, no proof of the cluster secret,
// a loop, an alternate's 404) returns a *Failure: it is counted by source
// and reason, and the next source is asked. Anything else (a registry's answer, a failure
// another cacheyd relayed, the caller's own end) is the answer. A source
// may also pass a request on without asking anyone (ErrNotAsked: a member
// skipped after a failure, a parent beyond the request's chain).
//
// A route is decided once per piece of work (a fill, a shared lookup): the
// planners of its list (the owner ranks the members for the key) are asked
// then, and never again for that work. The route carries the key the cache
// shares work by, and remembers the source that answered: a fill's later
// chunks and its resumes go there first, and past it once it fails. Own
// tiers and an object store become sources as one more field of Set, one
// more place in policy, and one more value in the composition root
// (internal/app), as the alternates did.
//
// sources knows only oci's vocabulary and the metrics; the sources
// themselves (package cluster, the upstream client) know nothing of it but
// the vocabulary.
package sources
