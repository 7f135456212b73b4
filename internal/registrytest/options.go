package registrytest

import "time"

// Options chooses how the fake registry behaves. The zero value is an open
// registry that serves everything to anyone, blobs included, from one host.
type Options struct {
	// Token demands Bearer tokens like Docker Hub: every /v2/ request
	// without a valid token answers 401 with a challenge naming the token
	// endpoint (/token on the same host). Mutually exclusive with Basic.
	Token bool

	// Basic demands Basic credentials from Users on every /v2/ request,
	// the way registries without a token service do. Mutually exclusive
	// with Token.
	Basic bool

	// Users maps user names to passwords. They authenticate at the token
	// endpoint (Token) or on every request (Basic), and may push where they
	// may pull; anonymous clients only pull. Nil means no users.
	Users map[string]string

	// Private maps repository names (as in the URL path, "team/app") to the
	// users allowed to pull them; anyone may pull every other repository.
	// Others asking for one get a token without access to it, and then 401
	// with error="insufficient_scope" (Token), or 403 DENIED (Basic).
	// Without Token or Basic there is no identity, so Private has no effect.
	Private map[string][]string

	// Redirect answers blob GETs on the registry with 307 to a second host
	// (the CDN, see CDNHostname), which serves the bytes from a signed URL
	// and refuses requests that carry Authorization. HEAD is answered by the
	// registry itself. False serves blobs directly.
	Redirect bool

	// CDNHostname is the host name the CDN is advertised under: "localhost"
	// or "127.0.0.1"; empty means "localhost". With localhost the CDN shares
	// the registry's host name (another port), which go-containerregistry
	// requires: it refuses redirects from a name to a private IP literal.
	// net/http's Client, though, copies an Authorization header set on the
	// request to any port of the same host name, so clients that work that
	// way (containerd) need "127.0.0.1", a different host name as with a real
	// CDN, where the header is dropped.
	CDNHostname string

	// TokenTTL is how long issued tokens stay valid. Zero means 5 minutes.
	TokenTTL time.Duration

	// PullLimit is Docker Hub's pull rate limit: every manifest GET that
	// passes authorization counts as a pull (HEAD does not), and once
	// PullLimit pulls are counted further manifest GETs are answered 429
	// TOOMANYREQUESTS with Docker Hub's message, until Reset starts a new
	// window. Manifest responses carry RateLimit-Limit and
	// RateLimit-Remaining as Docker Hub's do. Zero means unlimited (pulls
	// are still counted, see Pulls).
	PullLimit int

	// NoReferrers makes the registry one without the referrers API (OCI
	// 1.1): /v2/<name>/referrers/<digest> answers 404, and clients fall
	// back to the referrers tag schema. False serves referrers, filtered by
	// artifactType.
	NoReferrers bool

	// TagPage pages tag lists that ask for no n at this many tags, with a
	// Link to the next page, as registries with a default page size do
	// (Docker Hub's distribution, GHCR): a client must follow the Links to
	// see every tag. Zero answers the whole list.
	TagPage int

	// Addr is where the registry host listens: a loopback host:port, so
	// that a cacheyd started by hand can be pointed at a known address.
	// Empty means a free port on 127.0.0.1. The seeding server always
	// takes a free port.
	Addr string

	// CDNAddr is where the CDN listens, as Addr for the registry: a
	// cacheyd started by hand must allow the CDN's host:port to follow
	// redirects to it. Empty means a free port on 127.0.0.1.
	CDNAddr string
}
