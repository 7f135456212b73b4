// Package cache is cacheyd's read path: the policy that decides, for each
// request of a manifest or blob, where its answer comes from.
//
//   - Digests (digest.go): memory tier → disk tier → a fill in flight → a new
//     fill. A fill (fill.go) is one fetch from the origin into a pending
//     file of the disk tier, that every request for the digest reads while
//     it is written (package flight); it belongs to the cache, not to the
//     request that started it, and waits for a slot (slots.go) so that
//     fills are bounded in number. The cache owns a fill's policy: who
//     shares it (its key), its slot, its source (fillSource), the memory
//     of its failure, its metrics and logs, and what is kept (commit).
//     Package fill moves its bytes: the first request, ranges in parallel,
//     rescues of stranded readers, verification.
//   - Tags (tags.go): resolved at the origin with a HEAD once their answer is
//     older than the TTL, the last answer served while the origin fails. A
//     tag whose HEAD names no digest is read with one GET for all its
//     concurrent requests and served by the digest of its bytes.
//   - Listings (listing.go): tag lists and referrers, passed through as the
//     origin answers them and kept like a tag's answer. Tags and listings
//     climb one ladder (lookup.go): the answer kept while fresh, else one
//     lookup as cacheyd shared by every request at the time, else (refused)
//     one with the request's own credentials, for it alone, else the kept
//     answer served stale while the origin cannot answer, else the error.
//   - Accept (accept.go): a manifest whose media type the client does not
//     take is asked from the origin with the client's own Accept.
//   - Private content (private.go): what the origin gave only to a client's
//     credentials is served only for its sources, after the origin accepts
//     the request's credentials.
//   - Uncached (uncached.go): pass-through with a client's credentials, and
//     content the disk cannot take, streamed and still verified.
//   - Tiers (tiers.go): the cache declares what it consumes of its tiers, as
//     small interfaces: the memory tier (the bytes of small public objects),
//     the disk tier (records, files to serve, pending files for fills,
//     manifests put whole) and keepers, told of every verified public object
//     once the disk tier has committed it (an object store behind the
//     disk). It opens and closes none of them: the composition root
//     (internal/app) opens them, hands them to New (Tiers) and closes them
//     after Close, so that a new tier is a new value there, not a change to
//     the lookup (fromTiers) or the commit (commit).
//   - Read memory (readmem.go): what is read whole into memory rather than
//     streamed (a digest-less tag's manifest, listings, copies into the
//     memory tier) claims one budget as its bytes arrive, a quarter of it at
//     most per registry; a read that finds no room fails at once (503), a
//     copy into memory is skipped.
//
// The cache fetches through one seam it declares, Origin (origin.go); the
// credential fallback (as cacheyd, then with the client's credentials) is
// written once there, and retries are the retry package's. The cache knows
// nothing of HTTP servers, nor of how the origin reaches a registry, nor of
// how a tier stores its bytes: it imports neither server nor upstream, nor
// tier/memory nor tier/disk.
package cache
