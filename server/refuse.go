package server

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// refuser answers the connections beyond the limits of a limitListener.
// Each is read on a goroutine of its own, never on the Accept loop: its
// request head (at most maxRefusalHead bytes, within refusalTimeout, after
// the TLS handshake when serving TLS), answered as the server would for
// GET and HEAD of /healthz (200) and /readyz (200 or 503, the server's
// readiness), with 503 UNAVAILABLE OCI error JSON for anything else, then
// closed. A cacheyd that is full is alive, and a kubelet probing it must
// not restart it for being busy.
//
// At most maxRefusing connections are read at once; beyond that, a
// connection is refused without being read: plain HTTP gets the 503 at
// once, TLS a close.
type refuser struct {
	tls   *tls.Config // nil: plain HTTP
	ready func() bool // what /readyz answers
	// slots holds a token per connection being answered.
	slots chan struct{}

	healthy, isReady, notReady, unavailable []byte // whole responses

	mu     sync.Mutex            // guards conns and closed
	conns  map[net.Conn]struct{} // the connections being answered
	closed bool                  // close has been called: answer no more
	wg     sync.WaitGroup        // the answering goroutines
}

const (
	// maxRefusing bounds the refused connections being read at once.
	maxRefusing = 64
	// refusalTimeout bounds the reading of a refused connection (handshake
	// and request head), and then the writing of its answer.
	refusalTimeout = time.Second
	// maxRefusalHead bounds the request head read from a refused
	// connection; a probe's is a few dozen bytes.
	maxRefusalHead = 4 << 10
)

func newRefuser(tlsConfig *tls.Config, ready func() bool) *refuser {
	text := func(status int, body string) []byte {
		return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			status, http.StatusText(status), len(body), body)
	}
	return &refuser{
		tls: tlsConfig, ready: ready, slots: make(chan struct{}, maxRefusing),
		healthy:     text(http.StatusOK, "ok\n"),
		isReady:     text(http.StatusOK, "ready\n"),
		notReady:    text(http.StatusServiceUnavailable, "not ready\n"),
		unavailable: tooManyConnections(),
		conns:       map[net.Conn]struct{}{},
	}
}

// tooManyConnections is the whole HTTP response a refused connection gets
// unless it is a health probe.
func tooManyConnections() []byte {
	body, _ := json.Marshal(errorJSON{Errors: []errorEntry{{Code: oci.CodeUnavailable, Message: "too many connections"}}})
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %s\r\nConnection: close\r\n\r\n%s",
		http.StatusServiceUnavailable, http.StatusText(http.StatusServiceUnavailable), len(body), apiVersionHeader, apiVersion, body)
}

// refuse takes over c, a connection beyond the limits. It does not wait
// for the client.
func (r *refuser) refuse(c net.Conn) {
	select {
	case r.slots <- struct{}{}:
	default:
		r.refuseNow(c)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.slots
		_ = c.Close()
		return
	}
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	// Ends by c's deadlines, within twice refusalTimeout (reading, then
	// writing), or when close closes c.
	go r.answer(c)
}

// refuseNow refuses c without reading it. The 503 fits the empty send
// buffer of a new connection, so writing it does not wait for the client.
func (r *refuser) refuseNow(c net.Conn) {
	if r.tls == nil {
		_ = c.SetWriteDeadline(time.Now().Add(refusalTimeout))
		_, _ = c.Write(r.unavailable)
	}
	_ = c.Close()
}

// answer reads c's request head and answers it.
func (r *refuser) answer(c net.Conn) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		_ = c.Close()
		<-r.slots
		r.wg.Done()
	}()
	_ = c.SetDeadline(time.Now().Add(refusalTimeout))
	conn := c
	if r.tls != nil {
		conn = tls.Server(c, r.tls)
	}
	// The whole head is read, not only the request line: closing a socket
	// with unread bytes resets it, and the client could lose the answer.
	req, err := http.ReadRequest(bufio.NewReader(io.LimitReader(conn, maxRefusalHead)))
	// A client that sent nothing in time still gets its 503. After a
	// failed TLS handshake this write fails too: nothing is sent.
	_ = c.SetWriteDeadline(time.Now().Add(refusalTimeout))
	_, _ = conn.Write(r.answerTo(req, err))
}

// answerTo is the response to a refused connection's request.
func (r *refuser) answerTo(req *http.Request, err error) []byte {
	if err != nil || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return r.unavailable
	}
	resp := r.unavailable
	// As sent, like the server's own routing.
	switch req.URL.EscapedPath() {
	case "/healthz":
		resp = r.healthy
	case "/readyz":
		resp = r.notReady
		if r.ready() {
			resp = r.isReady
		}
	}
	if req.Method == http.MethodHead {
		resp = headOf(resp)
	}
	return resp
}

// headOf is a whole response without its body.
func headOf(resp []byte) []byte {
	for i := 0; i+4 <= len(resp); i++ {
		if string(resp[i:i+4]) == "\r\n\r\n" {
			return resp[:i+4]
		}
	}
	return resp
}

// close closes the connections being answered and waits for their
// goroutines; connections refused later are closed at once.
func (r *refuser) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
