// Package cluster makes cacheyd replicas fetch each digest and each tag
// from upstream once per cluster rather than once per replica. It owns the
// members (a static list, or the addresses of a headless Service's DNS name
// re-resolved), the owner of a key among them (rendezvous hashing, rank.go),
// and the two sources it gives the policy of package sources (sources.go):
// the owner (Origin.Owner), which asks the members ranked for a request's
// key over their own /v2 API with the hop header (oci.HopHeader), the owner
// first, skipping a member that failed for a while; and the parent
// (Origin.Parent), another cacheyd asked as a client. Which requests go to
// them, and what is asked after them (the registry), is the policy's.
//
// The steps, for a miss on replica R (the owner's part of a route is
// planned once, when the cache keys the work: Plan):
//
//  1. The key is the digest, or registry/repository:tag for a tag.
//  2. Members are ranked for the key, highest random weight first; the
//     first is its owner. A member joining or leaving moves only its own
//     keys. Only members that proved the cluster secret are asked (see
//     Trust below): one that cannot, or never answers, owns no key.
//  3. If R owns the key, or the request came from a peer (it carries the
//     hop header: a request is never forwarded twice, and the policy has
//     no owner for it), R fetches itself: from the parent if it has one,
//     else (or when the parent fails) from upstream.
//  4. Otherwise R asks the owner with the same ns, Accept, Range and the
//     client's Authorization (sealed); the owner coalesces every replica's
//     request into its one fill, and R streams the owner's bytes into its
//     own fill, which verifies the digest and keeps a copy.
//  5. Failure is held against whoever caused it. An answer the owner marks
//     relayed (oci.RelayedHeader: upstream's failure, after the owner's own
//     retries) is the answer: passed on wrapping oci.ErrRelayed, which the
//     cache's retry wrapper does not retry, never fetched around and never
//     counted against the owner, so one client request climbs one ladder
//     of retries however many replicas it crosses. An owner that cannot be
//     reached, refuses our token, stalls in the middle of a body (the
//     attempt's context ends with oci.ErrStalled after Config.BodyIdle,
//     long enough for the owner to resume a registry that stalls), or
//     answers what no cacheyd answers (1xx or 3xx, a range not asked for,
//     another digest, bytes that are not the digest: whole objects of a
//     known digest are verified as they stream) is skipped for
//     Config.Backoff, and the next member by rank is asked; an unmarked
//     5xx of its own asks the next member without skipping it. Each is a
//     sources.Failure with its reason, which the route counts before it
//     moves on, and which its later requests do not go back to. When the
//     next member is R itself and the work was keyed to a member, R asks
//     itself with the hop header, so that R's own fill for the key is the
//     one that every replica falling back to R joins. A body the owner
//     cuts is not by itself held against it: the cache's retry wrapper
//     resumes from the bytes it has by asking the route again, which finds
//     the owner unreachable (and skips it) or learns what its upstream did
//     (relayed).
//
// A request only ever goes to a member ranked above the asking replica for
// its key (reaching itself in the ranking, a replica fetches), and weights
// do not depend on who else is a member: however the replicas' views of the
// members differ for a while, requests never go round in a circle.
//
// Trust. The replicas share a secret (Config.Secret; internal/peerauth
// holds the crypto). Every request to a member carries a proof of it over
// what it asks, with a fresh nonce and a timestamp; the member's answer is
// believed (a tag's digest, a 200 to a credential check, content) only
// with the member's proof over the nonce and the headers acted on, else
// the member is skipped (outcome unauthenticated) and the next source
// asked. The pull budget an owner states on its proven answer to a
// manifest request (peerauth.BudgetHeader, proven on its own) is passed to
// Config.Heard, for the status page only; one that is not proven, or
// cannot be read, is ignored. A client's Authorization goes to a member
// sealed with the secret (peerauth.AuthorizationHeader), never in the
// clear. A member is asked only once it has proved the secret: it is
// probed (GET peerauth.ProbePath) when it appears in the view, with
// Config.ProbeTimeout to answer, and again a backoff after each failure;
// a request that would go to a member still on its first probe waits for
// the verdict. The members are at most MaxMembers: a static list over it
// is refused, a DNS answer over it cut to this replica and the lowest
// addresses.
//
// Loops of parents. Every request to the parent carries the chain of
// cacheyd instances it came through (oci.ViaHeader, Config.Instance); a
// cacheyd that finds itself there answers 508, which the child takes as
// its parent failing: it skips the parent, logs the cycle and fetches
// upstream itself, so a cycle costs one upstream fetch. A parent that is
// this very cacheyd (Config.Listen, Advertise) is refused at start.
//
// Route keys. The owner names the member a route's work goes to (the first
// above R not known to have failed), the parent names childRoute for a
// request that came through another cacheyd; the cache shares work only
// under one key, so that it never serves a peer's request from a fill that
// waits for a peer (at most one hop), nor lets a replica's request to
// itself join the fill waiting for it, nor shares a child's request with
// its own clients' fill that waits for its parent (a parent loop entered
// from both ends).
//
// cluster knows members, owners and peers, never the cache's insides: it
// sees only oci.Request and oci.Response, like any source.
package cluster
