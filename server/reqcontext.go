package server

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
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
// memory or disk hit never waits, so it never pays for a watcher, nor for
// the cancellable context beneath, which is made then too.
type requestContext struct {
	base  context.Context             // the server's base
	inner atomic.Pointer[cancellable] // made on the first Done
	// conn is the connection as fasthttp has it; one that is not a socket
	// (a pipe in tests) is not watched.
	conn net.Conn

	// started is set once Done has been asked for, or the exchange has
	// ended: a fast path around mu for the readers of a fill, which ask on
	// every read.
	started atomic.Bool
	mu      sync.Mutex // guards asked, ended, watch and the making of inner
	asked   bool       // Done was called while the exchange was on
	ended   bool       // the exchange has ended: start no watcher
	// watch is the running watcher; nil before Done, after end, or when
	// conn cannot be watched.
	watch *hangupWatch
}

// newRequestContext returns the context of a request served on conn.
func (s *Server) newRequestContext(conn net.Conn) *requestContext {
	return &requestContext{base: s.base, conn: conn}
}

// cancellable is the context beneath a request's, once it is waited on.
type cancellable struct {
	context.Context
	cancel context.CancelCauseFunc
}

// beneath returns the context beneath, making it if need be.
func (c *requestContext) beneath() *cancellable {
	if in := c.inner.Load(); in != nil {
		return in
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.inner.Load(); in != nil {
		return in
	}
	ctx, cancel := context.WithCancelCause(c.base)
	in := &cancellable{ctx, cancel}
	if c.ended {
		cancel(nil) // asked for after its end: done already
	}
	c.inner.Store(in)
	return in
}

// current is the context beneath, or the base while there is none.
func (c *requestContext) current() context.Context {
	if in := c.inner.Load(); in != nil {
		return in
	}
	return c.base
}

// Deadline is the base's: a request has none of its own.
func (c *requestContext) Deadline() (time.Time, bool) { return c.base.Deadline() }

// Err is the error of the context beneath, or the base's.
func (c *requestContext) Err() error { return c.current().Err() }

// Value looks key up in the context beneath, or the base. Once Done was
// asked for, context.WithCancel finds the cancelCtx beneath through it.
func (c *requestContext) Value(key any) any { return c.current().Value(key) }

// Done starts the watcher on the first call, then returns the channel of
// the context beneath. Returning that very channel keeps contexts derived
// from this one cheap: context.WithCancel finds the cancelCtx beneath
// (through Value) and, since the channels match, registers with it
// directly instead of starting a goroutine.
func (c *requestContext) Done() <-chan struct{} {
	in := c.beneath()
	if !c.started.Load() {
		c.startWatch()
	}
	return in.Done()
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
func (c *requestContext) hangup() { c.beneath().cancel(errClientGone) }

// clientGone reports whether the context was cancelled because the client
// closed its connection.
func (c *requestContext) clientGone() bool {
	return context.Cause(c) == errClientGone
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
	if in := c.inner.Load(); in != nil {
		in.cancel(nil)
	}
}
