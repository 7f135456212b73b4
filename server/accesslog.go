package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/oci"
)

// exchange follows one request from its first byte to its last: it is the
// request's access line, its metrics, and the end of its context.
//
// It is written by the handler, then (for a streamed body) by the stream on
// the goroutine fasthttp writes the response on, after the handler has
// returned; the two never overlap, so it needs no lock.
type exchange struct {
	s      *Server
	start  time.Time
	method string
	remote net.Addr // the client; made a string only for the log
	// kind is the metrics label: an API kind, "health", "metrics" or
	// "other".
	kind string
	// quiet logs at Debug: the operational endpoints are polled.
	quiet bool
	// req is the parsed request, nil if it did not parse.
	req  *oci.Request
	reqv oci.Request // what req points at
	// path is the path as sent, kept for the log only when it did not parse.
	path string

	status       int
	source       string // cache.Source, or "error"
	contentRange string // the Content-Range of a 206
	sent         int64  // body bytes (handed to the connection, for a stream)
	err          error  // what went wrong, for the log

	// ctx is the request's context, ended with the exchange; nil if it
	// has none.
	ctx       *requestContext
	streaming bool // the body is a stream, which ends the exchange
	closed    bool // the client closed its connection before the end
	ended     bool
}

// fail answers err (errors.go) and records it.
func (x *exchange) fail(ctx *fasthttp.RequestCtx, err error) {
	x.err = err
	x.source = "error"
	writeError(&ctx.Response, err)
}

// handled runs when the handler returns: the status is known, so the
// request is counted and its time to headers observed. Without a streamed
// body, that is also its end.
func (x *exchange) handled(ctx *fasthttp.RequestCtx) {
	x.status = ctx.Response.StatusCode()
	x.s.counters.request(x.kind, x.status).Inc()
	x.s.counters.duration(x.kind).Observe(time.Since(x.start).Seconds())
	if x.req != nil && x.req.FromPeer {
		x.s.m.PeerServed.WithLabelValues(x.kind, strconv.Itoa(x.status)).Inc()
	}
	if !x.streaming {
		x.end(x.sent, nil)
	}
}

// streamEnded is the streamEnd of a streamed body.
func (x *exchange) streamEnded(sent int64, err error) { x.end(sent, err) }

// end counts the bytes served, cancels the request's context (a fill
// reader stops waiting for a client that is gone) and logs the access line.
func (x *exchange) end(sent int64, err error) {
	if x.ended {
		return
	}
	x.ended = true
	gone := false
	if x.ctx != nil {
		gone = x.ctx.clientGone()
		x.ctx.end()
	}
	x.sent = sent
	if err != nil && x.err == nil {
		x.err = err
	}
	if x.err != nil && (gone || clientClosed(x.err)) {
		// A client that closes its connection before the end (containerd
		// reads the window it wants and hangs up) is not an error: it is
		// counted and logged as such.
		x.err, x.closed = nil, true
		x.s.m.ClientClosed.WithLabelValues(x.kind).Inc()
	}
	if sent > 0 && x.source != "" && x.source != "error" {
		x.s.counters.servedBytes(x.source).Add(float64(sent))
	}
	x.log()
}

func (x *exchange) log() {
	level := slog.LevelInfo
	if x.quiet {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !x.s.log.Enabled(ctx, level) {
		return
	}
	now := time.Now()
	if w := x.s.cfg.AccessLog; w != nil {
		x.writeLine(w, now, level)
		return
	}
	x.s.log.LogAttrs(ctx, level, "request", x.attrs(now)...)
}

// attrs is the access line's attributes for slog; appendLine writes the
// same ones by hand.
func (x *exchange) attrs(now time.Time) []slog.Attr {
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs, slog.String("method", x.method))
	if r := x.req; r != nil && r.Repository != "" {
		ref := r.Reference.Tag
		if r.Reference.IsDigest() {
			ref = r.Reference.Digest.Short()
		}
		attrs = append(attrs, slog.String("registry", r.Registry), slog.String("repository", r.Repository), slog.String("reference", ref))
	}
	attrs = append(attrs, slog.String("kind", x.kind))
	if x.path != "" {
		attrs = append(attrs, slog.String("path", quoteShort(x.path)))
	}
	attrs = append(attrs, slog.Int("status", x.status))
	if x.source != "" {
		attrs = append(attrs, slog.String("source", x.source))
	}
	attrs = append(attrs, slog.Int64("bytes", x.sent), slog.Duration("duration", now.Sub(x.start)))
	if x.contentRange != "" {
		attrs = append(attrs, slog.String("range", x.contentRange))
	}
	attrs = append(attrs, slog.String("remote", x.remote.String()))
	if x.closed {
		attrs = append(attrs, slog.Bool("client_closed", true))
	}
	if x.err != nil {
		attrs = append(attrs, slog.String("err", x.err.Error()))
	}
	return attrs
}

// clientClosed reports whether err is the client's connection going away
// under a response: its hangup seen while waiting, or a write that found the
// connection closed or reset.
func clientClosed(err error) bool {
	return errors.Is(err, errClientGone) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}
