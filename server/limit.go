package server

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// perIPListener enforces Config.MaxConnsPerIP. fasthttp's own MaxConnsPerIP
// wraps every connection in a type that hides *net.TCPConn's ReadFrom, and
// with it sendfile (see stream.go); the connections of this listener keep
// ReadFrom. (They lose fasthttp's writev of large in-memory bodies, which
// recognises only its own wrapper: a far smaller cost.)
type perIPListener struct {
	net.Listener
	max int
	log *slog.Logger

	mu    sync.Mutex         // guards conns
	conns map[netip.Addr]int // open connections per client address
}

func newPerIPListener(ln net.Listener, max int, log *slog.Logger) *perIPListener {
	return &perIPListener{Listener: ln, max: max, log: log, conns: map[netip.Addr]int{}}
}

// Accept returns the next connection whose address is under its limit; the
// others are closed at once, which a client sees as a reset and answers by
// trying its next mirror or the registry itself.
func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ta, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return c, nil // not a TCP connection (a pipe in tests): no limit
		}
		ip := ta.AddrPort().Addr().Unmap()
		if l.acquire(ip) {
			return &perIPConn{Conn: c, l: l, ip: ip}, nil
		}
		l.log.Debug("connection refused: too many from one address", "remote", ip.String(), "max", l.max)
		_ = c.Close()
	}
}

func (l *perIPListener) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[ip] >= l.max {
		return false
	}
	l.conns[ip]++
	return true
}

func (l *perIPListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[ip]--; l.conns[ip] <= 0 {
		delete(l.conns, ip)
	}
}

// perIPConn gives its address's slot back when closed.
type perIPConn struct {
	net.Conn
	l    *perIPListener
	ip   netip.Addr
	once sync.Once // Close may be called by the serving goroutine and by Shutdown
}

func (c *perIPConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// ReadFrom keeps the connection's own ReadFrom (sendfile, splice) reachable
// through the wrapper.
func (c *perIPConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides every method but Write, so that io.Copy does not call
// back into ReadFrom.
type writerOnly struct{ io.Writer }
