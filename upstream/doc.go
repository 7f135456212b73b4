// Package upstream is cacheyd's net/http client for upstream registries. Its
// *Client fetches one manifest, blob or listing (a page of a tag list, the
// referrers of a digest) per oci.Request and answers with an oci.Response
// or an error; it has the method set of cache.Origin, and the two
// packages do not import each other (internal/app joins them).
//
// How a request goes upstream:
//
//  1. Route. docker.io is fetched from https://registry-1.docker.io, any
//     other registry from https://<registry>; Config.RegistryURLs overrides
//     either (http allowed). Paths are /v2/<repository>/manifests/<ref>,
//     /v2/<repository>/blobs/<digest>, /v2/<repository>/tags/list (with n
//     and last) and /v2/<repository>/referrers/<digest> (with
//     artifactType).
//  2. Identity. Without a client Authorization cacheyd fetches as itself,
//     with go-containerregistry's transport: a /v2/ ping for the challenge,
//     then a token for repository:<name>:pull from the realm (anonymous, or
//     with cacheyd's credentials from a Docker config.json), or Basic. One
//     such transport is kept per (registry, repository) in a bounded LRU, so
//     a token is reused until it expires, and a cold burst sets it up once.
//     With a client Authorization, the header is forwarded unaltered and
//     nothing of cacheyd's own is sent.
//  3. Refusals. When the registry refuses cacheyd (401, 403), or cacheyd
//     cannot get a token, the request is asked again anonymously and that
//     answer is returned: the registry's own status, challenge
//     (WWW-Authenticate), Retry-After and body, so that a client such as
//     containerd can authenticate with the registry's realm by itself and
//     retry with Authorization.
//  4. Redirects (Docker Hub sends blob GETs to a CDN) are followed; a
//     credential is only ever added by a transport that checks the request
//     is for the registry's own host:port, and any Authorization is dropped
//     when a redirect changes host:port. A redirect from https to http is
//     refused, and so is one to a non-public address that is not trusted
//     for the fetch's own registry, and one to an address the operator
//     named for other fetches (see No open proxy below).
//  5. Bytes. Accept-Encoding: identity (no transparent decompression);
//     manifests are asked for with every type cacheyd accepts, tag lists
//     as application/json, referrers as an OCI index; a listing's Link
//     (the next page) and OCI-Filters-Applied are kept in the Response.
//     HEAD stays HEAD. A GET from an offset sends Range: bytes=<offset>-, and the
//     Response says where its body starts (0 when upstream ignored it).
//
// Errors: a registry's answer that is not content is an *oci.Error;
// failing to reach it at all (DNS, connect, TLS) wraps
// oci.ErrUpstreamUnavailable, which the server answers with a fast 502; a
// 206 whose Content-Range does not fit the request is treated the same
// way. The whole way from Fetch's start to the response headers (dial,
// TLS, ping and token exchange, redirects, the final headers however
// slowly they come) must fit Config.ResponseHeaderTimeout (header.go);
// past it Fetch fails wrapping both oci.ErrUpstreamUnavailable and
// oci.ErrUpstreamTimeout, so that the server can tell a hanging upstream
// from an unreachable one (a gateway timeout, not a bad gateway). The
// caller's own cancellation is returned as such.
//
// No open proxy: a registry name is a lookup key, never an address to
// trust, and what the operator trusts is exact host:port pairs, never a
// host on every port (trust.go). Config.Registries, when set, restricts the
// Client to a list (403 DENIED for any other). A mapped URL
// (RegistryURLs) is trusted as exactly that URL for exactly its registry
// name; an allowed registry (AllowedHosts) is its name's host:port,
// accepted as a registry name and dialled at private addresses; an allowed
// realm (AllowRealms) is trusted for token requests to that host:port
// only, which have a transport and a dialer of their own, so that neither
// a fetch, nor a redirect, nor a pooled connection reaches a realm's
// address. Fetches are trusted per registry: each carries its scope (the
// registry it is for) in its context, down to the dialers and to a guard
// on each transport that judges every request, token requests included,
// before a connection is looked for, a pooled one included. A mapped URL's address is dialled
// only for its own registry's fetches (pings, manifests, blobs, its
// redirects); an allowed address, for fetches of any registry the
// operator named (mapped or allowed), so that such a registry may redirect
// to an internal blob store; for any other fetch, a registry's redirect
// to either is refused, whatever the address resolves to and even with
// AllowPrivate, so that a registry a client names cannot send cacheyd to
// an internal registry's catalog, nor to its token endpoint as a realm.
// A registry a client names that is an IP literal (in any spelling), localhost, or the host of any of those under another port or
// name is refused before anything is dialled. Any other host, including
// token realms and redirect targets, is resolved by the client itself and
// dialled only at public addresses, by address, so a second DNS answer
// cannot slip a private one in. Token realms must be on the registry's
// host or its registrable domain, or in AllowRealms (realm.go), since
// cacheyd's credentials go there. A refusal is an *oci.Error 403 DENIED
// wrapping ErrRefused. Proxies from the environment are not used, since the
// policy must see the address it dials.
//
// Limits: a manifest over oci.MaxManifestSize (4 MiB), or a listing over
// oci.MaxListingSize (4 MiB), is refused with 413 SIZE_INVALID, by its announced size before it is read, or by its bytes
// while they are read (fills, tag lookups and pass-through alike); upstream
// response headers are bounded by Config.MaxResponseHeaderBytes and error
// bodies by MaxErrorBody.
//
// Metrics: every HTTP exchange upstream (redirect hops, pings and token
// requests included) counts in UpstreamRequests{registry, method, kind,
// code}, kind "auth" for an identity's setup and code "error" when no
// response came; body bytes read count in UpstreamBytes{registry}. Since
// clients name registries, the registry label is bounded (labels.go):
// configured registries by name, others by name only once they have served
// content and at most 64 of them, the rest as "other".
//
// Fetch makes one attempt (fetchOnce). Retries, backoff and the resuming of
// cut bodies are package retry's, which wraps the Client (or any origin) for
// the requests that need them; the client itself never asks twice.
package upstream
