package server

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/oci"
)

// serveListing answers a tag list or referrers from the cache: the
// registry's status, body and the headers that matter (Content-Type, Link,
// OCI-Filters-Applied), the Link made to point back at cacheyd.
func (s *Server) serveListing(ctx *fasthttp.RequestCtx, x *exchange, in *incoming, req *oci.Request) {
	rctx := s.newRequestContext(ctx.Conn())
	x.ctx = rctx
	l, err := s.cache.List(rctx, req)
	if err != nil {
		x.fail(ctx, s.whenGone(ctx, rctx, err))
		return
	}
	if l == nil {
		x.fail(ctx, errNilObject)
		return
	}
	x.source = l.Source.String()
	h := &ctx.Response.Header
	ctx.SetStatusCode(http.StatusOK)
	if l.MediaType != "" {
		h.SetContentType(l.MediaType)
	}
	if l.Link != "" {
		if link, ok := nextLink(l.Link, in); ok {
			h.Set("Link", link)
		}
	}
	if l.FiltersApplied != "" {
		h.Set("OCI-Filters-Applied", l.FiltersApplied)
	}
	if in.method == http.MethodHead {
		h.SetContentLength(len(l.Body))
		l.Release()
		return
	}
	// The body is the cache's, immutable: no copy. It is sent after the
	// handler returns; fasthttp closes the stream once it is sent or the
	// connection is gone, which gives back the memory the listing holds.
	ctx.Response.SetBodyStream(&listingBody{Reader: bytes.NewReader(l.Body), l: l}, len(l.Body))
	x.sent = int64(len(l.Body))
}

// listingBody sends a listing's body and releases the listing when
// fasthttp is done with it.
type listingBody struct {
	*bytes.Reader
	l *cache.Listing
}

func (b *listingBody) Close() error {
	b.l.Release()
	return nil
}

// maxLinks bounds the links of one Link header read; a registry sends one.
const maxLinks = 8

// nextLink rewrites upstream's Link header (RFC 8288: "<uri>; params",
// comma-separated), which names upstream's own path for the next page, so
// that each link names this listing through cacheyd: the path the client
// sent, the query of upstream's link without any ns, and the client's ns
// if it sent one. Parameters (rel="next") are kept as they are. A header
// that does not parse is dropped (false): the client sees the last page,
// not a link that leads elsewhere.
func nextLink(upstream string, in *incoming) (string, bool) {
	var out []string
	rest := strings.TrimSpace(upstream)
	for rest != "" {
		if len(out) == maxLinks || rest[0] != '<' {
			return "", false
		}
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return "", false
		}
		u, err := url.Parse(rest[1:end])
		if err != nil {
			return "", false
		}
		rest = rest[end+1:]
		params, after := cutLinkParams(rest)
		rest = strings.TrimSpace(after)
		q := u.Query()
		q.Del("ns")
		if in.hasNS {
			q.Set("ns", in.ns)
		}
		target := in.path
		if enc := q.Encode(); enc != "" {
			target += "?" + enc
		}
		out = append(out, "<"+target+">"+strings.TrimRight(params, " \t"))
	}
	if len(out) == 0 {
		return "", false
	}
	return strings.Join(out, ", "), true
}

// cutLinkParams splits a link's parameters (up to the comma that ends the
// link, outside quoted strings) from the links after it.
func cutLinkParams(s string) (params, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case c == '\\' && quoted:
			i++
		case c == ',' && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
