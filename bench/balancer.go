package bench

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// balancer spreads TCP connections over backends in turn, as a Kubernetes
// Service does (per connection, not per request): the front of the
// replicas of a clustered burst.
type balancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64

	mu    sync.Mutex // guards conns and done
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup // the accept loop and every connection's copies
}

// newBalancer listens on a free loopback port in front of backends
// (host:port).
func newBalancer(backends []string) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	// Stops when close closes the listener.
	go b.accept()
	return b, nil
}

// url is the balancer's base URL.
func (b *balancer) url() string { return "http://" + b.ln.Addr().String() }

func (b *balancer) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		backend := b.backends[b.next.Add(1)%uint64(len(b.backends))]
		b.wg.Add(1)
		// Stops when either side closes, or close closes both.
		go b.proxy(c, backend)
	}
}

// proxy copies between a client connection and a new one to backend.
func (b *balancer) proxy(c net.Conn, backend string) {
	defer b.wg.Done()
	s, err := net.Dial("tcp", backend)
	if err != nil {
		c.Close()
		return
	}
	if !b.track(c, s) {
		return
	}
	defer b.untrack(c, s)
	var once sync.Once
	end := func() { once.Do(func() { c.Close(); s.Close() }) }
	var wg sync.WaitGroup
	// Each copy stops when its source ends or end closes both.
	wg.Go(func() { _, _ = io.Copy(s, c); end() })
	wg.Go(func() { _, _ = io.Copy(c, s); end() })
	wg.Wait()
}

// track registers a pair, or closes it if the balancer is closing.
func (b *balancer) track(c, s net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		c.Close()
		s.Close()
		return false
	}
	b.conns[c], b.conns[s] = struct{}{}, struct{}{}
	return true
}

func (b *balancer) untrack(c, s net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
	delete(b.conns, s)
}

// close stops accepting, cuts every connection and waits for the copies.
func (b *balancer) close() error {
	err := b.ln.Close()
	b.mu.Lock()
	b.done = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
