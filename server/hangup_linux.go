package server

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// hangupWatch notices that a client closed its connection while its request
// waits, without reading anything fasthttp should read: it peeks at the
// socket (recv with MSG_PEEK) whenever the runtime's poller finds it
// readable. A peek of 0 bytes is the peer's FIN; an error such as
// ECONNRESET is a connection gone too. Bytes to read (a pipelined request,
// a TLS record) end the watch without a verdict: they are fasthttp's, and
// the client is evidently still there. So a TLS client, which sends a
// close notification record before its FIN, is not caught leaving; its
// stream fails at the next write instead. A client that half-closes after
// its request (shutdown(SHUT_WR)) reads as gone, which no registry client
// does.
type hangupWatch struct {
	conn net.Conn      // the socket, for its read deadline
	done chan struct{} // closed when the goroutine has returned
}

// watchHangup starts watching conn (a *tls.Conn is watched through the
// connection beneath it) and calls hangup once if the client closes it.
// It returns nil, watching nothing, for a connection that is not a socket.
func watchHangup(conn net.Conn, hangup func()) *hangupWatch {
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = nc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	// The request is read, but fasthttp's ReadTimeout deadline for it is
	// still set, and would end the watch of a fill that takes longer.
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil // closed already
	}
	w := &hangupWatch{conn: conn, done: make(chan struct{})}
	// Returns when the client closes, when bytes arrive, or when stop sets
	// a past read deadline (or the connection is closed, at Shutdown).
	go w.run(rc, hangup)
	return w
}

func (w *hangupWatch) run(rc syscall.RawConn, hangup func()) {
	defer close(w.done)
	gone := false
	// An error of Read itself is the deadline stop set or a closed
	// connection: the exchange is over either way.
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.EAGAIN):
				return false // nothing yet: the poller waits for readability
			case err != nil:
				gone = true // ECONNRESET and the like
			case n == 0:
				gone = true // the peer's FIN
			}
			return true
		}
	})
	if gone {
		hangup()
	}
}

// stop ends the watch and waits for its goroutine to return.
func (w *hangupWatch) stop() {
	// A past deadline wakes the poller; Read returns os.ErrDeadlineExceeded.
	_ = w.conn.SetReadDeadline(time.Unix(1, 0))
	<-w.done
}
