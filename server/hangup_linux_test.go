package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestLeavingClientsFreeTheirSlots: clients that start downloads of a slow
// fill and leave do not keep their connections. With every slot taken by
// such downloads, each client sees status and headers before a single body
// byte exists (the origin has sent none), then closes; every request
// context is cancelled (the fill's readers stop waiting), every slot is
// given back, and a new request is served while the fill is still held.
// Once it ends, everything its readers held is released.
func TestLeavingClientsFreeTheirSlots(t *testing.T) {
	const clients = 4
	for _, tt := range []struct {
		name    string
		chunked bool
	}{{"known size", false}, {"chunked", true}} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPacedBlob(t, 1<<20, tt.chunked)
			wantLength := int64(len(p.data))
			if tt.chunked {
				wantLength = -1
			}
			ts := startTCP(t, Config{MaxConns: clients}, p, nil)
			lim := ts.limit(t)
			var conns []net.Conn
			for i := range clients {
				c := dialRaw(t, ts.addr)
				conns = append(conns, c)
				sendRaw(t, c, "GET /v2/app/blobs/"+string(p.digest)+" HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("client %d: no headers while the fill has sent nothing: %v", i, err)
				}
				if resp.StatusCode != 200 || resp.ContentLength != wantLength {
					t.Errorf("client %d: status %d, Content-Length %d; want 200, %d", i, resp.StatusCode, resp.ContentLength, wantLength)
				}
			}
			waitOpen(t, lim, clients)
			for _, c := range conns {
				c.Close()
			}
			p.waitDone(t, clients)
			waitOpen(t, lim, 0)

			// The fill is still held; a new client is served.
			resp, body, err := ts.do(t, "GET", "/v2/", nil)
			if err != nil || resp.StatusCode != 200 || string(body) != "{}" {
				t.Fatalf("GET /v2/ after the clients left: %v %d %q", err, resp.StatusCode, body)
			}
			// The probe of limit, the clients that left, GET /v2/.
			lines := ts.logs.wait(t, clients+2)
			gone := 0
			for _, l := range lines {
				if l["client_closed"] == true && l["err"] == nil {
					gone++
				}
			}
			if gone != clients {
				t.Errorf("%d access lines say the client left, want %d: %v", gone, clients, lines)
			}
			close(p.pace)
			p.cache.closeReleased(t)
		})
	}
}

// TestDisconnectBeforeHeaders: a client that leaves while the cache is
// still deciding (here waiting for a fill whose upstream has not answered)
// has its request context cancelled, also as seen through the context the
// cache derives from it to bound its wait, and its connection closed; the
// access line says why.
func TestDisconnectBeforeHeaders(t *testing.T) {
	entered := make(chan struct{}, 1)
	// Answers nothing until the fill's own context ends (the cache's Close).
	o := origintest.Func(func(ctx context.Context, _ *oci.Request) (*oci.Response, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	// Past the test's own failure deadline: the wait ends only by the hangup.
	spy := &spyCache{Cache: newTestCache(t, o, func(cfg *cache.Config) { cfg.AnswerTimeout = 2 * waitLimit })}
	ts := startTCP(t, Config{}, spy, nil)
	lim := ts.limit(t)
	c := dialRaw(t, ts.addr)
	sendRaw(t, c, "GET /v2/app/blobs/"+string(digestA)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-entered:
	case <-timeout(t):
		t.Fatal("upstream was not asked")
	}
	c.Close()
	spy.waitDone(t, 1)
	waitOpen(t, lim, 0)
	line := ts.logs.wait(t, 2)[1]
	if line["status"] != int64(statusClientClosed) || line["client_closed"] != true || line["err"] != nil {
		t.Errorf("access line status %v client_closed %v err %v, want %d, closed, no error", line["status"], line["client_closed"], line["err"], statusClientClosed)
	}
}

// TestWatchedConnectionStaysUsable: a connection whose request was watched
// serves its next request (the watcher gave the connection back to
// fasthttp), whether the watch ended with the response or because the
// client sent its next request early (pipelining), which is no hangup.
func TestWatchedConnectionStaysUsable(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(map[bool]string{false: "keep-alive", true: "pipelined"}[pipelined], func(t *testing.T) {
			p := newPacedBlob(t, 100, false)
			ts := startTCP(t, Config{}, p, nil)
			c := dialRaw(t, ts.addr)
			br := bufio.NewReader(c)
			blob := "GET /v2/app/blobs/" + string(p.digest) + " HTTP/1.1\r\nHost: x\r\n\r\n"
			sendRaw(t, c, blob)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pipelined {
				// Bytes to read while the fill is held.
				sendRaw(t, c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			p.send(t, 100)
			// Whole: the fill's reader, waiting on the request context,
			// was not cancelled by the watch.
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
			ctxs := p.contexts()
			if len(ctxs) != 1 || context.Cause(ctxs[0]) == errClientGone {
				t.Errorf("%d requests, cause %v: taken for a hangup", len(ctxs), context.Cause(ctxs[0]))
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
	p := newPacedBlob(t, 1<<20, false)
	ts := startTCP(t, Config{ReadTimeout: readTimeout}, p, nil)
	lim := ts.limit(t)
	c := dialRaw(t, ts.addr)
	sendRaw(t, c, "GET /v2/app/blobs/"+string(p.digest)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	<-time.After(3 * readTimeout)
	c.Close()
	p.waitDone(t, 1)
	waitOpen(t, lim, 0)
	if line := ts.logs.wait(t, 2)[1]; line["client_closed"] != true || line["err"] != nil {
		t.Errorf("access line client_closed %v err %v, want closed and no error", line["client_closed"], line["err"])
	}
}

// TestHitStartsNoWatcher: a memory or disk hit never waits, so serving one
// asks its context for nothing and no watcher is started.
func TestHitStartsNoWatcher(t *testing.T) {
	data := testData(64 << 10)
	for _, src := range sources {
		if src.source != cache.SourceMemory && src.source != cache.SourceDisk {
			continue
		}
		t.Run(src.name, func(t *testing.T) {
			spy := &spyCache{Cache: src.serve(t, data, "")}
			ts := startTCP(t, Config{}, spy, nil)
			resp, body, err := ts.do(t, "GET", "/v2/app/blobs/"+string(oci.FromBytes(data)), nil)
			if err != nil || resp.StatusCode != 200 || len(body) != len(data) {
				t.Fatalf("GET: %v %d, %d bytes", err, resp.StatusCode, len(body))
			}
			if line := ts.logs.wait(t, 1)[0]; line["source"] != src.source.String() {
				t.Fatalf("source %v, want %s", line["source"], src.source)
			}
			ctxs := spy.contexts()
			for _, ctx := range ctxs {
				rc := ctx.(*requestContext)
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
