package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// limitListener enforces Config.MaxConns and Config.MaxConnsPerIP as it
// accepts. fasthttp's own limits answer with plain text, and its
// MaxConnsPerIP wraps every connection in a type that hides
// *net.TCPConn's ReadFrom, and with it sendfile (see stream.go); the
// connections of this listener keep ReadFrom (and SyscallConn, for the
// hangup watcher), and a refused connection is handed to the refuser
// (refuse.go), which answers its health probes and refuses the rest with
// OCI error JSON (503 UNAVAILABLE). (They lose fasthttp's writev of large
// in-memory bodies, which recognises only its own wrapper: a far smaller
// cost.)
type limitListener struct {
	net.Listener
	maxConns int // 0: no limit
	maxPerIP int // 0: no limit
	// refuser answers the connections beyond the limits; nil closes them
	// at once.
	refuser *refuser
	log     *slog.Logger

	mu    sync.Mutex // guards total, perIP and changed
	total int
	perIP map[netip.Addr]int // open connections per client address
	// changed is closed and cleared when total changes; it exists only
	// while someone waits (waitOpen), so that nobody else pays for it.
	changed chan struct{}
}

func newLimitListener(ln net.Listener, maxConns, maxPerIP int, refuser *refuser, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, maxConns: maxConns, maxPerIP: maxPerIP, refuser: refuser, log: log, perIP: map[netip.Addr]int{}}
}

// Accept returns the next connection that is within the limits; the
// others go to the refuser, which never makes Accept wait on a client. A
// client such as containerd answers the 503 by trying its next mirror or
// the registry itself.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr // the zero Addr: not TCP (a pipe in tests), no per-IP limit
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip = ta.AddrPort().Addr().Unmap()
		}
		if l.acquire(ip) {
			return &limitedConn{Conn: c, l: l, ip: ip}, nil
		}
		l.log.Debug("connection refused: too many", "remote", c.RemoteAddr().String(), "max_conns", l.maxConns, "max_conns_per_ip", l.maxPerIP)
		if l.refuser != nil {
			l.refuser.refuse(c)
		} else {
			_ = c.Close()
		}
	}
}

// Close closes the listener, then the refused connections still being
// answered, and waits for their goroutines.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	if l.refuser != nil {
		l.refuser.close()
	}
	return err
}

func (l *limitListener) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.total >= l.maxConns {
		return false
	}
	if l.maxPerIP > 0 && ip.IsValid() && l.perIP[ip] >= l.maxPerIP {
		return false
	}
	l.total++
	if ip.IsValid() {
		l.perIP[ip]++
	}
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return true
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	if !ip.IsValid() {
		return
	}
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// open returns the number of connections held.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// waitOpen waits until exactly n connections are held, or ctx is done.
func (l *limitListener) waitOpen(ctx context.Context, n int) error {
	for {
		l.mu.Lock()
		if l.total == n {
			l.mu.Unlock()
			return nil
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("server: waiting for %d open connections, have %d: %w", n, l.open(), ctx.Err())
		}
	}
}

// limitedConn gives its slots back when closed.
type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   netip.Addr
	once sync.Once // Close may be called by the serving goroutine and by Shutdown
}

// Close releases the slots before it closes, so that a client that has seen
// the connection end finds them free.
func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.Conn.Close()
}

// ReadFrom keeps the connection's own ReadFrom (sendfile, splice) reachable
// through the wrapper.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// SyscallConn gives the hangup watcher the socket beneath (hangup_linux.go).
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}

var errNotSocket = errors.New("server: connection is not a socket")

// writerOnly hides every method but Write, so that io.Copy does not call
// back into ReadFrom.
type writerOnly struct{ io.Writer }
