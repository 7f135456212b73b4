package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// heldFill is a fake cache whose every answer is a fill in flight that has
// nothing yet: its body hands out the pieces sent on feed, and otherwise
// waits for them, like a reader of a fill whose upstream is slow; it ends
// at its size, if known, or when feed is closed. A body
// whose request context ends while it waits reports it on cancelled and
// fails with the context's error, as a fill reader does.
type heldFill struct {
	size      int64         // announced; -1 for unknown (chunked)
	feed      chan []byte   // a piece of body for one of the readers; closed: EOF
	cancelled chan struct{} // one send per request context seen done

	mu   sync.Mutex // guards sent
	sent int        // body bytes handed out, by every reader
}

func newHeldFill(size int64) *heldFill {
	return &heldFill{size: size, feed: make(chan []byte), cancelled: make(chan struct{}, 64)}
}

func (h *heldFill) get(ctx context.Context, req *oci.Request) (answer, error) {
	return answer{digest: digestA, size: h.size, source: tier.SourceFillNew, hasBody: true, content: &heldContent{h: h, ctx: ctx}}, nil
}

// heldContent is the content of one answer of a heldFill.
type heldContent struct {
	h   *heldFill
	ctx context.Context
}

func (c *heldContent) Bytes() []byte { return nil }
func (c *heldContent) Close() error  { return nil }

func (c *heldContent) Body(_, n int64) (io.ReadCloser, error) {
	h, ctx := c.h, c.ctx
	var cur []byte
	return io.NopCloser(readerFunc(func(p []byte) (int, error) {
		if n == 0 {
			return 0, io.EOF // a window read whole ends, as a fill reader's does
		}
		for len(cur) == 0 {
			select {
			case b, ok := <-h.feed:
				if !ok {
					return 0, io.EOF
				}
				cur = b
			case <-ctx.Done():
				h.cancelled <- struct{}{}
				return 0, ctx.Err()
			}
		}
		if n > 0 {
			p = p[:min(int64(len(p)), n)]
		}
		k := copy(p, cur)
		cur = cur[k:]
		n -= int64(k)
		h.mu.Lock()
		h.sent += k
		h.mu.Unlock()
		return k, nil
	})), nil
}

func (h *heldFill) sentBytes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent
}

// waitCancelled waits for n request contexts to have been seen done.
func waitCancelled(t *testing.T, ch <-chan struct{}, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-ch:
		case <-t.Context().Done():
			t.Fatalf("%d of %d request contexts cancelled", i, n)
		case <-timeout(t):
			t.Fatalf("waited %v: %d of %d request contexts cancelled", waitLimit, i, n)
		}
	}
}

// timeout is a channel that fires after waitLimit, as a failure deadline.
func timeout(t *testing.T) <-chan struct{} {
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	t.Cleanup(cancel)
	return ctx.Done()
}

// limit returns the limit listener of a server serving TCP, once Serve has
// made it (a request answered on a connection of its own proves it), with
// that connection's slot given back.
func (ts *testServer) limit(t *testing.T) *limitListener {
	t.Helper()
	c := dialRaw(t, ts.addr)
	sendRaw(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	readRaw(t, bufio.NewReader(c), "GET")
	c.Close()
	ts.mu.Lock()
	lim := ts.limits[0]
	ts.mu.Unlock()
	waitOpen(t, lim, 0)
	return lim
}

// waitOpen waits until lim holds exactly n connections.
func waitOpen(t *testing.T, lim *limitListener, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := lim.waitOpen(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// dialRaw opens a TCP connection to addr whose reads fail after waitLimit,
// so that a test waiting for an answer that never comes fails instead of
// hanging.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return deadlined(t, c)
}

func deadlined(t *testing.T, c net.Conn) net.Conn {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	return c
}

func sendRaw(t *testing.T, c net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// readRaw reads one response to a request of method and its whole body.
func readRaw(t *testing.T, br *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, body
}
