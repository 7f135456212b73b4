package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// limitListener enforces Config.MaxConns and Config.MaxConnsPerIP as it
// accepts. fasthttp's own limits answer with plain text, and its
// MaxConnsPerIP wraps every connection in a type that hides
// *net.TCPConn's ReadFrom, and with it sendfile (see stream.go); the
// connections of this listener keep ReadFrom, and a refused connection is
// answered like any other refusal, with OCI error JSON (503 UNAVAILABLE),
// before it is closed. (They lose fasthttp's writev of large in-memory
// bodies, which recognises only its own wrapper: a far smaller cost.)
type limitListener struct {
	net.Listener
	maxConns int // 0: no limit
	maxPerIP int // 0: no limit
	// refusal is written to a refused connection before it is closed; nil
	// closes it at once (TLS, where the handshake has not happened yet).
	refusal []byte
	log     *slog.Logger

	mu    sync.Mutex // guards total and perIP
	total int
	perIP map[netip.Addr]int // open connections per client address
}

// refusalWriteTimeout bounds writing the refusal: it fits the socket's
// send buffer, so only a connection that is already gone takes long.
const refusalWriteTimeout = time.Second

func newLimitListener(ln net.Listener, maxConns, maxPerIP int, plain bool, log *slog.Logger) *limitListener {
	l := &limitListener{Listener: ln, maxConns: maxConns, maxPerIP: maxPerIP, log: log, perIP: map[netip.Addr]int{}}
	if plain {
		l.refusal = tooManyConnections()
	}
	return l
}

// tooManyConnections is the whole HTTP response a refused connection gets.
func tooManyConnections() []byte {
	body, _ := json.Marshal(errorJSON{Errors: []errorEntry{{Code: oci.CodeUnavailable, Message: "too many connections"}}})
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %s\r\nConnection: close\r\n\r\n%s",
		http.StatusServiceUnavailable, http.StatusText(http.StatusServiceUnavailable), len(body), apiVersionHeader, apiVersion, body)
}

// Accept returns the next connection that is within the limits; the
// others are answered 503 and closed at once, which a client such as
// containerd answers by trying its next mirror or the registry itself.
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
		if l.refusal != nil {
			_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
			_, _ = c.Write(l.refusal)
		}
		_ = c.Close()
	}
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
	return true
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
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

// writerOnly hides every method but Write, so that io.Copy does not call
// back into ReadFrom.
type writerOnly struct{ io.Writer }
