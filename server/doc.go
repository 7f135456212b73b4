// Package server is cacheyd's HTTP front end: it parses each request of the
// OCI distribution API once into plain values (registry, repository,
// reference, Range, Accept, Authorization), asks the cache for the content
// and writes it with the headers registry clients expect, Range and HEAD
// included. It answers errors as OCI error JSON (or passes upstream's own
// answer through, challenge and all), refuses pushes, writes one access
// line per request, and serves /metrics, /healthz and /readyz.
//
// Routing: a request's registry is its ?ns= parameter (containerd's mirror
// protocol), and then the whole path is the repository name; else a
// host-like first path component (/v2/ghcr.io/org/app/..., as CRI-O and
// podman mirrors send); else Config.DefaultRegistry (dockerd's
// registry-mirrors). One-component Docker Hub names get library/. The path
// is taken as sent, never percent-decoded or cleaned: the distribution
// grammar has no '%' and no "..", so such paths are refused, not
// reinterpreted.
//
// Answers other than content:
//
//   - GET /v2/ is 200 "{}"; every /v2 response, errors too, carries
//     Docker-Distribution-API-Version: registry/2.0.
//   - Any method but GET and HEAD is 405 UNSUPPORTED (Allow: GET, HEAD):
//     the cache is read-only, and a push learns so at its first request.
//   - Tag lists (/v2/<name>/tags/list, with n and last) and referrers
//     (/v2/<name>/referrers/<digest>, with artifactType) are the cache's
//     listings (listing.go): the registry's status, body, Content-Type and
//     OCI-Filters-Applied as it sent them, and its Link (the next page)
//     rewritten to name the same listing on cacheyd, the client's path and
//     ns kept. A registry without the referrers API answers 404, passed
//     on, and clients fall back to the tag schema.
//   - Uploads and _catalog are 405 UNSUPPORTED with an empty Allow: the
//     endpoints exist in the API, and none of their methods is enabled
//     here; a mirror does not enumerate what it holds.
//   - A request that carries a usable ?ns= gets OCI-Namespace: <its value>
//     on every answer, errors included, as the distribution spec's
//     proxying section asks of a registry that scopes requests by ns.
//   - Paths that are no endpoint are 404 UNSUPPORTED.
//   - Range: one range (bytes=N-, N-M, -N) is 206, a first byte past the
//     end 416 RANGE_INVALID with "Content-Range: bytes */size"; several
//     ranges or a malformed header are ignored (200), as RFC 9110 allows.
//   - ?ns= given more than once is 400 NAME_INVALID, like a malformed one:
//     the request names two registries, and taking one of them would let
//     whatever sits in front of cacheyd read it as naming the other.
//   - Errors (errors.go): upstream's own answer passes through; an upstream
//     that did not answer in time (oci.ErrUpstreamTimeout, or a deadline)
//     is 504 UNAVAILABLE, one that cannot be reached 502; a HEAD gets the
//     headers a GET of the same error gets, Content-Length included. An
//     error that is upstream's doing (oci.FromUpstream) carries
//     X-Cacheyd-Relayed: 1 (oci.RelayedHeader); cacheyd's own refusals
//     never do, so a cacheyd that asked this one can tell the two apart.
//
// Guards (see docs/security.md):
//
//   - Config.Registries: a request for a registry off the list is 403
//     DENIED before the cache is asked.
//   - Config.ClientTokens: /v2 without a valid X-Cacheyd-Token header is
//     401 UNAUTHORIZED (health always, /metrics unless GuardMetrics, stay
//     open); Authorization is left to the client's registry credentials.
//   - Limits: the header section (request line included) is bounded by
//     MaxHeaderBytes (431), a body by 8 KiB (413); ReadTimeout bounds the
//     reading of a request from the connection's start or the request's
//     first byte (408, then close), so a client that sends half a request
//     holds a connection for ReadTimeout at most; connections beyond
//     MaxConns or MaxConnsPerIP are answered and closed (limit.go,
//     refuse.go): their request head is read on a goroutine of its own
//     (a few KiB within a second, at most 64 such connections at once),
//     GET and HEAD of /healthz and /readyz get the answers they would get
//     within the limits, so that probes do not fail a cacheyd for being
//     busy, and anything else 503 UNAVAILABLE. Every refusal is OCI error
//     JSON.
//   - A client that leaves while its request waits (on upstream, on a fill
//     to start, or on the bytes of a fill in flight) is noticed: its
//     request context is cancelled, the response fails and the connection
//     is closed, which frees its slot (reqcontext.go, hangup_linux.go). It
//     is logged and counted as 499, as nginx does. (Over TLS the close
//     notification a client sends first ends the watch undecided; there a
//     client that left is noticed at the next write.)
//   - Requests of other cacheyds (peers.go): a request with the hop header
//     (oci.HopHeader) is a peer's only with a valid proof of
//     Config.ClusterSecret; else it is 403 DENIED (counted in
//     cacheyd_cluster_refused_total) and the cache is not asked. A peer's
//     client credentials arrive sealed, and its answers, errors and the
//     guard's 401 included, carry this replica's proof. GET /cacheyd/peer
//     answers a replica probing whether this one holds the secret. A
//     request whose X-Cacheyd-Via chain names Config.Instance came back
//     through a chain of parents: 508 LOOP_DETECTED, logged at most once a
//     minute.
//   - Config.TLS serves HTTPS (HTTP/1.1).
//
// The server is the only package that knows the HTTP library (fasthttp);
// below it, everything speaks oci.Request, context.Context and io.Reader.
// Bodies are streamed: a disk hit is sent with sendfile, a fill in flight as
// it is written (its headers at once, each read as it returns, not when a
// buffer fills), and a body that fails part-way aborts the connection so
// that a client never mistakes a short response for a whole one. The write
// deadline moves with progress, so a long download is never cut off but a
// client that stops reading is (see stream.go).
package server
