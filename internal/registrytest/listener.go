package registrytest

import (
	"context"
	"net"
	"sync"
	"testing"
)

// CountingListener is a loopback TCP listener that counts the connections
// it accepts. As NewCountingListener makes it, it stands for any other
// service on cacheyd's network (SSH, Redis, a metadata server) that nobody
// named, so that a test can prove nothing connected to it; as
// NewSilentListener makes it, it is an upstream that accepts and never
// answers.
type CountingListener struct {
	ln   net.Listener
	hold bool // keep connections open, unanswered, until the test ends

	mu       sync.Mutex      // guards accepted, probes, held and changed
	accepted []string        // remote address of every connection accepted, in order
	probes   map[string]bool // local addresses of Accepted's own connections
	held     []net.Conn      // when hold
	changed  chan struct{}   // closed and replaced on every accept
	done     chan struct{}   // closed when the accept loop has stopped
}

// NewCountingListener listens on 127.0.0.1:0 until the test ends and
// closes every connection as soon as it has accepted it.
func NewCountingListener(t testing.TB) *CountingListener { return newListener(t, false) }

// NewSilentListener listens on 127.0.0.1:0 until the test ends and holds
// every connection it accepts open until then, never answering.
func NewSilentListener(t testing.TB) *CountingListener { return newListener(t, true) }

func newListener(t testing.TB, hold bool) *CountingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &CountingListener{ln: ln, hold: hold, probes: map[string]bool{}, changed: make(chan struct{}), done: make(chan struct{})}
	// Stops when the cleanup closes the listener.
	go l.serve()
	t.Cleanup(func() {
		ln.Close()
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.held {
			c.Close()
		}
	})
	return l
}

func (l *CountingListener) serve() {
	defer close(l.done)
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.hold {
			l.held = append(l.held, conn)
		} else {
			conn.Close()
		}
		l.accepted = append(l.accepted, conn.RemoteAddr().String())
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
}

// Addr is the listener's address, "127.0.0.1:<port>".
func (l *CountingListener) Addr() string { return l.ln.Addr().String() }

// Port is the listener's port.
func (l *CountingListener) Port() string {
	_, port, _ := net.SplitHostPort(l.Addr())
	return port
}

// Accepted returns how many connections others have made so far. It
// connects once itself and waits until that connection is accepted (or ctx
// ends): the kernel hands out connections in the order they were made, so
// every connection made before the call has been counted by then. Its own
// connections are not counted.
func (l *CountingListener) Accepted(ctx context.Context) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", l.Addr())
	if err != nil {
		return 0, err
	}
	probe := conn.LocalAddr().String()
	conn.Close()
	l.mu.Lock()
	l.probes[probe] = true
	l.mu.Unlock()
	return l.wait(ctx, func(n int, accepted map[string]bool) bool { return accepted[probe] })
}

// WaitAccepted waits until others have made at least n connections, or ctx
// ends.
func (l *CountingListener) WaitAccepted(ctx context.Context, n int) error {
	_, err := l.wait(ctx, func(others int, _ map[string]bool) bool { return others >= n })
	return err
}

// wait waits until done, given the count of others' connections and the
// set of every accepted address, says so, and returns that count.
func (l *CountingListener) wait(ctx context.Context, done func(others int, accepted map[string]bool) bool) (int, error) {
	for {
		l.mu.Lock()
		others, seen := 0, make(map[string]bool, len(l.accepted))
		for _, a := range l.accepted {
			seen[a] = true
			if !l.probes[a] {
				others++
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if done(others, seen) {
			return others, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}
