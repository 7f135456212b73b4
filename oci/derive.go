package oci

import "net/http"

// Requests derived from another: a fill asks for the whole object its first
// client asked a window of, a chunk asks for its bytes, the credential
// fallback asks again as cacheyd, a tag's lookup asks what every client of
// the tag shares. Each method below returns a copy of r changed for one
// such intent and leaves r as it was, so that what a derived request keeps
// (the identity, FromPeer, Via, Route, Cached) is decided here once rather
// than remembered at each copy. The copies share Accept and Via with r, as
// any copy of a Request does: neither is changed in place.

// Whole is r asking for the whole object with a GET: what a fill fetches
// whatever window its first client reads. Reset: Method (GET), Window and
// Wants. Kept: what it names (Kind, Registry, Repository, Reference,
// List), Accept, Authorization, FromPeer, Via, Route and Cached: it is the
// same work, asked by the same identity.
func (r *Request) Whole() *Request {
	out := *r
	out.Method, out.Window, out.Wants = http.MethodGet, Window{}, Window{}
	return &out
}

// Part is r asking for the bytes w of the object with a GET: a chunk of a
// fill, the window its first client reads, a resume. Reset: Method (GET),
// Window (w) and Wants (the window is asked for itself). Kept, as by Whole:
// what it names, Accept, Authorization, FromPeer, Via, Route and Cached.
func (r *Request) Part(w Window) *Request {
	out := *r
	out.Method, out.Window, out.Wants = http.MethodGet, w, Window{}
	return &out
}

// AsCacheyd is r asked as cacheyd itself rather than with the client's
// credentials: content fetched so is everyone's. Reset: Authorization.
// Kept: everything else, Route and Cached too (where work goes does not
// depend on who asks for it), FromPeer and Via.
func (r *Request) AsCacheyd() *Request {
	out := *r
	out.Authorization = ""
	return &out
}

// Head is r as a HEAD: whether the origin would serve what r names, with
// r's identity (a private digest's check). Reset: Method (HEAD), Window and
// Wants (a HEAD has no body), and Route and Cached (a HEAD is work of its
// own: the caller routes it, if at all). Kept: what it names, Accept,
// Authorization, FromPeer and Via.
func (r *Request) Head() *Request {
	out := *r
	out.Method, out.Window, out.Wants, out.Route, out.Cached = http.MethodHead, Window{}, Window{}, "", false
	return &out
}

// ByDigest is r for the content at digest d (the manifest a tag points
// to). Reset: Reference (d), Route and Cached (another key is other work:
// the caller routes it anew). Kept: Method, Kind, Registry, Repository,
// the windows, Accept, Authorization, FromPeer and Via.
func (r *Request) ByDigest(d Digest) *Request {
	out := *r
	out.Reference, out.Route, out.Cached = Reference{Digest: d}, "", false
	return &out
}

// Lookup is r asked with method as a lookup that every client asking for
// what r names shares (a tag's HEAD, a tag list): nothing of one client's
// may shape it. Reset: Method (method), Authorization (as cacheyd),
// Accept (every manifest type), Window and Wants (the whole object), Route
// and Cached (the caller routes the shared work). Kept: what it names (Kind,
// Registry, Repository, Reference, List), FromPeer and Via. A field added
// to Request is reset here until it is said to be kept.
func (r *Request) Lookup(method string) *Request {
	return &Request{Method: method, Kind: r.Kind, Registry: r.Registry, Repository: r.Repository,
		Reference: r.Reference, List: r.List, FromPeer: r.FromPeer, Via: r.Via}
}
