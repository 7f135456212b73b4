package server

import (
	"crypto/tls"
	"io"
	"net"
)

// tlsListener is tls.NewListener, with connections that have a ReadFrom.
type tlsListener struct {
	net.Listener
	config *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{tls.Server(c, l.config)}, nil
}

// tlsConn is a *tls.Conn with a ReadFrom that writes each read of a
// streamed body as it returns. *tls.Conn has none, so fasthttp's
// bufio.Writer.ReadFrom would hold a slow fill's bytes in its 4 KiB buffer
// until it fills (see stream.go). It keeps Handshake and ConnectionState,
// by which fasthttp knows the connection is TLS, and NetConn, through which
// the hangup watcher reaches the socket.
type tlsConn struct{ *tls.Conn }

func (c *tlsConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{c.Conn}, r)
}
