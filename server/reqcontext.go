package server

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// requestContext is the context a request asks the cache with. It is
// cancelled when the exchange ends, when the server's base context is
// (Shutdown), and when the client closes its connection while the request
// waits: on a fill that has not started, on upstream, or on the bytes of a
// fill in flight. A client that left then stops holding its connection,
// and with it a slot of the limit listener, until a slow fill ends.
//
// Noticing the close takes a watcher on the connection (hangup_linux.go).
// It is started the first time anything asks for Done, which is what
// waiting on a context does (select, context.WithCancel, AfterFunc): a
// memory or disk hit never waits, so it never pays for a watcher.
type requestContext struct {
	context.Context // context.WithCancelCause of the server's base
	cancel          context.CancelCauseFunc
	// conn is the connection as fasthttp has it; one that is not a socket
	// (a pipe in tests) is not watched.
	conn net.Conn

	// started is set once Done has been asked for, or the exchange has
	// ended: a fast path around mu for the readers of a fill, which ask on
	// every read.
	started atomic.Bool
	mu      sync.Mutex // guards asked, ended and watch
	asked   bool       // Done was called while the exchange was on
	ended   bool       // the exchange has ended: start no watcher
	// watch is the running watcher; nil before Done, after end, or when
	// conn cannot be watched.
	watch *hangupWatch
}

// newRequestContext returns the context of a request served on conn.
func (s *Server) newRequestContext(conn net.Conn) *requestContext {
	ctx, cancel := context.WithCancelCause(s.base)
	return &requestContext{Context: ctx, cancel: cancel, conn: conn}
}

// Done starts the watcher on the first call, then returns the channel of
// the context beneath. Returning that very channel keeps contexts derived
// from this one cheap: context.WithCancel finds the cancelCtx beneath
// (through Value) and, since the channels match, registers with it
// directly instead of starting a goroutine.
func (c *requestContext) Done() <-chan struct{} {
	if !c.started.Load() {
		c.startWatch()
	}
	return c.Context.Done()
}

func (c *requestContext) startWatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked || c.ended {
		return
	}
	c.asked = true
	c.started.Store(true)
	if c.conn != nil {
		c.watch = watchHangup(c.conn, c.hangup)
	}
}

// hangup is the watcher's report that the client closed the connection.
func (c *requestContext) hangup() { c.cancel(errClientGone) }

// clientGone reports whether the context was cancelled because the client
// closed its connection.
func (c *requestContext) clientGone() bool {
	return context.Cause(c.Context) == errClientGone
}

// end ends the request: it stops the watcher, waiting until it has
// returned, so that fasthttp alone reads the connection again, and cancels
// the context. fasthttp sets a read deadline of its own before it reads the
// next request (IdleTimeout, never zero here), so the past deadline that
// stopped the watcher does not stay.
func (c *requestContext) end() {
	c.mu.Lock()
	w := c.watch
	c.ended, c.watch = true, nil
	c.started.Store(true)
	c.mu.Unlock()
	if w != nil {
		w.stop()
	}
	c.cancel(nil)
}
