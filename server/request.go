package server

import (
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/oci"
)

// incoming is what the server reads of a client request, copied out of the
// fasthttp.RequestCtx at once: the context's byte slices are reused as soon
// as the handler returns, and a streamed body outlives the handler.
type incoming struct {
	method string
	// path is the request path exactly as sent, not percent-decoded or
	// cleaned: oci.ParsePath's grammar admits no '%' and no "..", so an
	// escaped or dotted path is refused rather than reinterpreted.
	path  string
	ns    string
	hasNS bool
	// nsRepeated: ?ns= was given more than once.
	nsRepeated bool
	// list is a listing's query (n, last, artifactType), as sent;
	// listRepeated names a parameter of it given more than once.
	list         oci.ListQuery
	listRepeated string
	// accept holds every Accept header value as sent.
	accept        []string
	rangeHeader   string
	ifRange       string
	authorization string
	remote        net.Addr
	// hop: the request says it came from another replica (oci.HopHeader);
	// it is one only with a valid proof (peers.go).
	hop bool
	// What another cacheyd's request carries beside (peers.go), copied
	// only when it says it is one: the request target as sent, the proof
	// of the cluster secret and the sealed Authorization.
	uri, proof, sealed string
	// via is the oci.ViaHeader chain as sent; viaIDs its ids, once the
	// handler found no loop in it.
	via    string
	viaIDs []string
}

// maxAcceptValues bounds how many Accept headers are read; a client needs a
// handful, one per manifest media type.
const maxAcceptValues = 16

// readIncoming copies what the server needs out of ctx. The headers are
// read in one pass: every hit pays for it, and a Peek per header would
// scan them all again for each.
func readIncoming(ctx *fasthttp.RequestCtx) incoming {
	h := &ctx.Request.Header
	in := incoming{
		method: methodString(ctx.Method()),
		path:   string(ctx.URI().PathOriginal()),
		remote: ctx.RemoteAddr(),
	}
	var proof, sealed []byte
	first := func(dst *string, v []byte) {
		if *dst == "" {
			*dst = string(v)
		}
	}
	// Keys come normalized (fasthttp's default), as the constants are.
	for k, v := range h.All() {
		switch string(k) {
		case "Range":
			first(&in.rangeHeader, v)
		case "If-Range":
			first(&in.ifRange, v)
		case "Authorization":
			first(&in.authorization, v)
		case "Accept":
			if len(in.accept) < maxAcceptValues {
				in.accept = append(in.accept, string(v))
			}
		case oci.HopHeader:
			in.hop = in.hop || len(v) > 0
		case oci.ViaHeader:
			first(&in.via, v)
		case peerauth.ProofHeader:
			if proof == nil {
				proof = v
			}
		case peerauth.AuthorizationHeader:
			if sealed == nil {
				sealed = v
			}
		}
	}
	if in.hop || in.path == peerauth.ProbePath {
		in.uri = string(h.RequestURI())
		in.proof, in.sealed = string(proof), string(sealed)
	}
	if args := ctx.QueryArgs(); args.Len() > 0 {
		readQuery(args, &in)
	}
	return in
}

// readQuery copies the query parameters cacheyd reads into in: ns, and a
// listing's n, last and artifactType. Others are ignored.
func readQuery(args *fasthttp.Args, in *incoming) {
	nsCount := 0
	var seen [3]bool // n, last, artifactType
	take := func(i int, name string, dst *string, v []byte) {
		if seen[i] {
			in.listRepeated = name
		}
		seen[i] = true
		*dst = string(v)
	}
	for k, v := range args.All() {
		switch string(k) {
		case "ns":
			if nsCount == 0 {
				in.ns, in.hasNS = string(v), true
			}
			nsCount++
		case "n":
			take(0, "n", &in.list.N, v)
		case "last":
			take(1, "last", &in.list.Last, v)
		case "artifactType":
			take(2, "artifactType", &in.list.ArtifactType, v)
		}
	}
	in.nsRepeated = nsCount > 1
}

// apiRequest is a distribution API request, parsed and validated.
type apiRequest struct {
	path oci.Path
	// req is what the cache is asked; set for manifests, blobs and
	// listings.
	req oci.Request
}

// parseAPI parses a request to the distribution API (a path under /v2).
// Errors are *oci.Error, to be answered as they are.
func parseAPI(in *incoming, defaultRegistry string) (apiRequest, error) {
	p, err := oci.ParsePath(in.path)
	if err != nil {
		if e, ok := oci.AsError(err); ok && e.Status == http.StatusNotFound {
			// NAME_UNKNOWN would tell the client the repository does not
			// exist; what does not exist is the endpoint.
			return apiRequest{}, errNoEndpoint
		}
		return apiRequest{}, err
	}
	out := apiRequest{path: p}
	if p.Kind == oci.KindBase || p.Kind == oci.KindCatalog {
		return out, nil
	}
	registry, name := p.Registry, p.Name
	switch {
	case in.hasNS:
		// With ?ns= (containerd's mirror protocol) the whole path is the
		// repository name, even when its first component looks like a host:
		// "team.name/app" on ns=registry.example.com is one name.
		if in.nsRepeated {
			// Two registries named: taking either one would let a proxy in
			// front of cacheyd and cacheyd itself read different requests.
			return apiRequest{}, oci.ErrNameInvalid("ns: given more than once")
		}
		if registry, err = oci.NormalizeRegistry(in.ns); err != nil {
			return apiRequest{}, oci.ErrNameInvalid("ns: " + err.Error())
		}
		if p.Registry != "" {
			name = firstSegment(in.path) + "/" + p.Name
		}
	case registry == "":
		registry = defaultRegistry
	}
	repo := oci.NormalizeRepository(registry, name)
	if !oci.ValidName(repo) {
		return apiRequest{}, oci.ErrNameInvalid("repository name " + quoteShort(repo) + " does not match the distribution spec grammar")
	}
	out.req = oci.Request{
		Method:        in.method,
		Kind:          p.Kind,
		Registry:      registry,
		Repository:    repo,
		Reference:     p.Reference,
		Accept:        parseAccept(in.accept),
		Authorization: in.authorization,
		FromPeer:      in.hop,
		Via:           in.viaIDs,
	}
	if p.Kind == oci.KindBlob && in.method == http.MethodGet {
		out.req.Wants = wantsOf(in.rangeHeader)
	}
	if p.Kind.IsListing() {
		// Only a listing reads its query; n, last or artifactType on
		// anything else are ignored, as a registry ignores them.
		if in.listRepeated != "" {
			return apiRequest{}, &oci.Error{Status: http.StatusBadRequest, Code: oci.CodeUnsupported,
				Message: "query: " + in.listRepeated + " given more than once"}
		}
		if err := in.list.Validate(p.Kind); err != nil {
			return apiRequest{}, err
		}
		out.req.List = in.list
	}
	return out, nil
}

// firstSegment returns the path component after /v2/, as sent.
func firstSegment(path string) string {
	rest := strings.TrimPrefix(path, "/v2/")
	seg, _, _ := strings.Cut(rest, "/")
	return seg
}

// maxAcceptTypes bounds the media types taken from Accept headers; there
// are six manifest media types, and the rest would be noise.
const maxAcceptTypes = 32

// parseAccept splits Accept header values into bare media types: parameters
// and q-values are dropped (every manifest type the client names is one it
// takes), duplicates and empty entries skipped. No types gives nil.
func parseAccept(values []string) []string {
	var out []string
	for _, v := range values {
		for len(v) > 0 {
			var item string
			item, v, _ = strings.Cut(v, ",")
			mt, _, _ := strings.Cut(item, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if mt == "" || slices.Contains(out, mt) {
				continue
			}
			if len(out) == maxAcceptTypes {
				return out
			}
			out = append(out, mt)
		}
	}
	return out
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// methodString is the request's method as a string, without allocating for
// the methods a registry client sends.
func methodString(m []byte) string {
	switch string(m) { // compared without a copy
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	}
	return string(m)
}
