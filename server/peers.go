package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/oci"
)

// What another cacheyd's request gets here (see docs/security.md):
//
//   - A request with the hop header (oci.HopHeader) is a peer's only with
//     a valid proof of the cluster secret (peerauth.ProofHeader): then it
//     is fetched here and never forwarded, its sealed Authorization
//     (peerauth.AuthorizationHeader) becomes its Authorization, and the
//     answer carries this replica's proof (and, to a manifest request,
//     the pull budget it last read from the registry:
//     peerauth.BudgetHeader). Without one it is refused 403 DENIED: the
//     hop header is no way around the owner for a client.
//   - GET peerauth.ProbePath with a valid proof is answered 200 with a
//     proof: how a replica admits a member.
//   - A request whose oci.ViaHeader names this cacheyd, or more than
//     oci.MaxVia of them, came back through a chain of parents: 508
//     LOOP_DETECTED, and an error logged at most once a minute.

// errPeerRefused answers a hop request or probe without a valid proof.
func errPeerRefused(why string) *oci.Error {
	return &oci.Error{Status: http.StatusForbidden, Code: oci.CodeDenied,
		Message: oci.HopHeader + " is for replicas of this cluster: " + why + " (all replicas need the same --cluster-secret)"}
}

// codeLoopDetected is the code of a 508: no OCI code says it.
const codeLoopDetected = "LOOP_DETECTED"

// loopLogEvery spaces the error logged for requests that came back.
const loopLogEvery = time.Minute

// peer is what a request proven with the cluster secret carries to its
// answer: the proof the answer is proven over.
type peer struct {
	proof peerauth.Proof
}

// admitPeer checks the proof of a request that says it is a peer's (in.hop)
// and, if it holds, puts the unsealed Authorization in its place and
// returns the peer; else it answers the refusal and returns nil.
func (s *Server) admitPeer(ctx *fasthttp.RequestCtx, x *exchange, in *incoming) *peer {
	refuse := func(why string) *peer {
		s.m.ClusterRefused.WithLabelValues("unauthenticated").Inc()
		x.path = in.path
		x.fail(ctx, errPeerRefused(why))
		return nil
	}
	if s.keys == nil {
		return refuse("this cacheyd has no cluster secret")
	}
	proof, err := s.keys.Verify(in.proof, in.peerRequest(), time.Now())
	if err != nil {
		return refuse(err.Error())
	}
	// A peer's client credentials come sealed, never in the clear; an
	// Authorization beside the proof is not the client's.
	in.authorization = ""
	if in.sealed != "" {
		if in.authorization, err = s.keys.Unseal(proof, in.uri, in.sealed); err != nil {
			return refuse(err.Error())
		}
	}
	return &peer{proof: proof}
}

// peerRequest is what in's proof covers.
func (in *incoming) peerRequest() peerauth.Request {
	return peerauth.Request{Method: in.method, URI: in.uri, Range: in.rangeHeader,
		Accept: strings.Join(in.accept, ", "), Via: in.via, Sealed: in.sealed}
}

// proveAnswer adds the answer's proof for p: run once every header of the
// answer is set, before it is written.
func (s *Server) proveAnswer(ctx *fasthttp.RequestCtx, p *peer) {
	resp := &ctx.Response
	h := &resp.Header
	a := peerauth.Answer{
		Status:        resp.StatusCode(),
		Digest:        string(h.Peek("Docker-Content-Digest")),
		ContentType:   string(h.Peek("Content-Type")),
		ContentLength: strconv.Itoa(answerLength(ctx)),
		ContentRange:  string(h.Peek("Content-Range")),
		Source:        string(h.Peek(oci.SourceHeader)),
		Relayed:       string(h.Peek(oci.RelayedHeader)),
		Challenge:     string(h.Peek("WWW-Authenticate")),
		RetryAfter:    string(h.Peek("Retry-After")),
	}
	h.Set(peerauth.AnswerHeader, s.keys.SignAnswer(p.proof, a))
}

// stateBudget adds to the answer to p's manifest request req (nil when it
// did not parse) the pull budget this cacheyd last read from req's
// registry, if it read one (Config.PeerBudget).
func (s *Server) stateBudget(ctx *fasthttp.RequestCtx, p *peer, req *oci.Request) {
	if s.cfg.PeerBudget == nil || req == nil || req.Kind != oci.KindManifest || req.Registry == "" {
		return
	}
	if b, ok := s.cfg.PeerBudget(req.Registry); ok {
		ctx.Response.Header.Set(peerauth.BudgetHeader, s.keys.SignBudget(p.proof, b))
	}
}

// answerLength is the Content-Length the answer goes out with, -1 for
// none (chunked): a stream's announced size, a HEAD's header, else the
// body's length, which fasthttp sets when it writes.
func answerLength(ctx *fasthttp.RequestCtx) int {
	if ctx.Response.IsBodyStream() || ctx.IsHead() {
		return ctx.Response.Header.ContentLength()
	}
	return len(ctx.Response.Body())
}

// serveProbe answers a member's probe: 200 with a proof to a request
// proven with the cluster secret.
func (s *Server) serveProbe(ctx *fasthttp.RequestCtx, x *exchange, in *incoming) {
	if !isRead(in.method) {
		serveText(ctx, in, http.StatusMethodNotAllowed, "")
		return
	}
	p := s.admitPeer(ctx, x, in)
	if p == nil {
		return
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("cacheyd peer\n")
	s.proveAnswer(ctx, p)
}

// loop reports whether in came back to this cacheyd (its id in the Via
// chain) or passed through as many cacheyds as any chain may (oci.MaxVia,
// this one included: a chain it passes on, its own id added, is never
// over the bound, so a parent refuses a request only for its own id), and
// returns the chain as ids.
func (s *Server) loop(in *incoming) (ids []string, looped bool) {
	if in.via == "" {
		return nil, false
	}
	for id := range strings.SplitSeq(in.via, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if (s.cfg.Instance != "" && id == s.cfg.Instance) || len(ids) == oci.MaxVia-1 {
			return nil, true
		}
		ids = append(ids, id)
	}
	return ids, false
}

// refuseLoop answers a request that came back with 508, counts it, and
// logs it at most once every loopLogEvery.
func (s *Server) refuseLoop(ctx *fasthttp.RequestCtx, x *exchange, in *incoming) {
	s.m.ClusterRefused.WithLabelValues("loop").Inc()
	now := time.Now().UnixNano()
	if last := s.loopLogged.Load(); now-last >= int64(loopLogEvery) && s.loopLogged.CompareAndSwap(last, now) {
		s.log.Error("request loop: a request came back to this cacheyd through the cacheyds it asks; check the --parent of each",
			"instance", s.cfg.Instance, "via", quoteShort(in.via), "path", quoteShort(in.path))
	}
	x.path = in.path
	// The message does not name this cacheyd's id: whoever knew it could
	// make others refuse requests for it.
	x.fail(ctx, &oci.Error{Status: http.StatusLoopDetected, Code: codeLoopDetected,
		Message: "request loop: it came back to a cacheyd it passed through (" + oci.ViaHeader + "), or passed through too many: a --parent chain leads back to where it started"})
}
