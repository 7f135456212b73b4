package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// TestLeavingClientsFreeTheirSlots: clients that start downloads of a slow
// fill and leave do not keep their connections. With every slot taken by
// such downloads, each client sees status and headers before a single body
// byte exists, then closes; every request context is cancelled (the fill
// readers stop waiting), every slot is given back, and a new request is
// served while the fills are still held.
func TestLeavingClientsFreeTheirSlots(t *testing.T) {
	const clients = 4
	for _, tt := range []struct {
		name string
		size int64
	}{{"known size", 1 << 20}, {"chunked", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHeldFill(tt.size)
			defer close(h.feed)
			ts := startTCP(t, Config{MaxConns: clients}, h.get, nil)
			lim := ts.limit(t)
			var conns []net.Conn
			for i := range clients {
				c := dialRaw(t, ts.addr)
				conns = append(conns, c)
				sendRaw(t, c, "GET /v2/app/blobs/"+string(digestA)+" HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("client %d: no headers while the fill has sent nothing: %v", i, err)
				}
				if resp.StatusCode != 200 || resp.ContentLength != tt.size {
					t.Errorf("client %d: status %d, Content-Length %d; want 200, %d", i, resp.StatusCode, resp.ContentLength, tt.size)
				}
				if n := h.sentBytes(); n != 0 {
					t.Fatalf("client %d: the fill handed out %d bytes before the headers arrived", i, n)
				}
			}
			waitOpen(t, lim, clients)
			for _, c := range conns {
				c.Close()
			}
			waitCancelled(t, h.cancelled, clients)
			waitOpen(t, lim, 0)

			// The fills are still held; a new client is served.
			resp, body, err := ts.do(t, "GET", "/v2/", nil)
			if err != nil || resp.StatusCode != 200 || string(body) != "{}" {
				t.Fatalf("GET /v2/ after the clients left: %v %d %q", err, resp.StatusCode, body)
			}
			// The probe of limit, the clients that left, GET /v2/.
			lines := ts.logs.wait(t, clients+2)
			gone := 0
			for _, l := range lines {
				if e, _ := l["err"].(string); strings.HasPrefix(e, errClientGone.Error()) {
					gone++
				}
			}
			if gone != clients {
				t.Errorf("%d access lines say the client left, want %d: %v", gone, clients, lines)
			}
			if n := len(h.cancelled); n != 0 {
				t.Errorf("%d more request contexts cancelled than clients", n)
			}
		})
	}
}

// TestDisconnectBeforeHeaders: a client that leaves while the cache is
// still deciding (waiting on upstream, or on a fill to start) has its
// request context cancelled, also as seen through a context derived from
// it, and its connection closed; the access line says why.
func TestDisconnectBeforeHeaders(t *testing.T) {
	entered := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	get := func(ctx context.Context, req *oci.Request) (answer, error) {
		// As a cache's own wait would: context.WithCancel asks Done.
		inner, cancel := context.WithCancel(ctx)
		defer cancel()
		entered <- struct{}{}
		<-inner.Done()
		cancelled <- struct{}{}
		return answer{}, inner.Err()
	}
	ts := startTCP(t, Config{}, get, nil)
	lim := ts.limit(t)
	c := dialRaw(t, ts.addr)
	sendRaw(t, c, "GET /v2/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-entered:
	case <-timeout(t):
		t.Fatal("the cache was not asked")
	}
	c.Close()
	waitCancelled(t, cancelled, 1)
	waitOpen(t, lim, 0)
	line := ts.logs.wait(t, 2)[1]
	if e, _ := line["err"].(string); line["status"] != int64(statusClientClosed) || !strings.HasPrefix(e, errClientGone.Error()) {
		t.Errorf("access line status %v err %v, want %d and %q", line["status"], line["err"], statusClientClosed, errClientGone)
	}
}

// TestWatchedConnectionStaysUsable: a connection whose request was watched
// serves its next request (the watcher gave the connection back to
// fasthttp), whether the watch ended with the response or because the
// client sent its next request early (pipelining), which is no hangup.
func TestWatchedConnectionStaysUsable(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(map[bool]string{false: "keep-alive", true: "pipelined"}[pipelined], func(t *testing.T) {
			h := newHeldFill(100)
			var (
				mu   sync.Mutex // guards ctxs
				ctxs []context.Context
			)
			get := func(ctx context.Context, req *oci.Request) (answer, error) {
				mu.Lock()
				ctxs = append(ctxs, ctx)
				mu.Unlock()
				return h.get(ctx, req)
			}
			ts := startTCP(t, Config{}, get, nil)
			c := dialRaw(t, ts.addr)
			br := bufio.NewReader(c)
			blob := "GET /v2/app/blobs/" + string(digestA) + " HTTP/1.1\r\nHost: x\r\n\r\n"
			sendRaw(t, c, blob)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pipelined {
				// Bytes to read while the fill is held.
				sendRaw(t, c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			h.feed <- testData(100)
			body, err := io.ReadAll(resp.Body)
			if err != nil || len(body) != 100 {
				t.Fatalf("first response: %d bytes, %v", len(body), err)
			}
			if !pipelined {
				// The request ends, its watch stopped, while the client
				// sends nothing more.
				ts.logs.wait(t, 1)
				sendRaw(t, c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			if resp, body := readRaw(t, br, "GET"); resp.StatusCode != 200 || string(body) != "{}" {
				t.Errorf("second request on the connection: %d %q", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(ctxs) != 1 || context.Cause(ctxs[0]) == errClientGone {
				t.Errorf("%d requests, cause %v: taken for a hangup", len(ctxs), context.Cause(ctxs[0]))
			}
			if n := len(h.cancelled); n != 0 {
				t.Errorf("%d request contexts cancelled", n)
			}
		})
	}
}

// TestHangupAfterReadTimeout: a request waits on a fill for longer than
// ReadTimeout, whose deadline is still set on the connection from reading
// the request; the client's close is still noticed. (The wait is the
// subject of the test, a deadline being wall-clock time, not a way to
// synchronise.)
func TestHangupAfterReadTimeout(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	h := newHeldFill(1 << 20)
	defer close(h.feed)
	ts := startTCP(t, Config{ReadTimeout: readTimeout}, h.get, nil)
	lim := ts.limit(t)
	c := dialRaw(t, ts.addr)
	sendRaw(t, c, "GET /v2/app/blobs/"+string(digestA)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	<-time.After(3 * readTimeout)
	c.Close()
	waitCancelled(t, h.cancelled, 1)
	waitOpen(t, lim, 0)
}

// TestHitStartsNoWatcher: a memory or disk hit never waits, so serving one
// asks its context for nothing and no watcher is started.
func TestHitStartsNoWatcher(t *testing.T) {
	data := testData(64 << 10)
	for _, src := range sources {
		if src.source != tier.SourceMemory && src.source != tier.SourceDisk {
			continue
		}
		t.Run(src.name, func(t *testing.T) {
			c := src.make(t, data)
			var (
				mu   sync.Mutex // guards ctxs
				ctxs []*requestContext
			)
			get := func(ctx context.Context, req *oci.Request) (answer, error) {
				mu.Lock()
				ctxs = append(ctxs, ctx.(*requestContext))
				mu.Unlock()
				return answer{digest: oci.FromBytes(data), size: int64(len(data)), source: src.source, hasBody: true, content: c}, nil
			}
			ts := startTCP(t, Config{}, get, nil)
			resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(oci.FromBytes(data)), nil)
			if err != nil || resp.StatusCode != 200 || len(body) != len(data) {
				t.Fatalf("GET: %v %d, %d bytes", err, resp.StatusCode, len(body))
			}
			ts.logs.wait(t, 1)
			mu.Lock()
			defer mu.Unlock()
			for _, rc := range ctxs {
				rc.mu.Lock()
				asked := rc.asked
				rc.mu.Unlock()
				if asked {
					t.Error("a hit asked its request context for Done: a watcher was started")
				}
			}
			if len(ctxs) != 1 {
				t.Errorf("%d requests, want 1", len(ctxs))
			}
		})
	}
}
