// Package warm pulls images through a running cacheyd before they are
// needed, so that a later burst of nodes finds every manifest and blob in
// the cache.
//
// It asks cacheyd exactly what containerd would, through internal/puller:
// a HEAD of the tag, a GET of the manifest (and of each chosen platform's
// manifest in an index) by digest, and a GET of the config and every
// layer, each with ?ns=<registry>. Every body is read to the end and
// checked against its digest, then thrown away; nothing is stored
// locally. What is warm's own is around that: the image list, reading
// every manifest before any blob so that a blob shared by several images
// is fetched once and the progress bar knows its total, the hints on a
// refusal, and the fetched and already-cached accounting below.
//
// Whether a byte was already cached cannot be read from cacheyd's answers:
// a hit and a fill look the same to a client. So the split is taken from
// cacheyd's own counter cacheyd_upstream_bytes_total, read from /metrics
// before and after: what it grew by is what cacheyd fetched from upstream
// while the warm ran, and the rest of what the warm received was already
// cached. Other clients pulling uncached content at the same time inflate
// the fetched figure; when /metrics cannot be read the split is unknown.
//
// What a warm costs of the registries' pull budgets is read the same way,
// from cacheyd_upstream_pulls_total of the registries warmed, with the
// budgets left from cacheyd_upstream_ratelimit_remaining and _limit; a
// target without /metrics (a registry itself) is reported the manifest
// GETs the warm sent. DryRun (dryrun.go) tells what a warm would cost
// without a counted pull, from HEADs and what cacheyd already holds.
package warm
