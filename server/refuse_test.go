package server

import (
	"bufio"
	"crypto/tls"
	"net"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

// TestHealthAtConnectionLimit: with every slot taken, a new connection is
// still answered: /healthz 200, /readyz the server's readiness, anything
// else 503 UNAVAILABLE OCI error JSON; each is closed after its answer and
// none takes a slot. Over TLS too.
func TestHealthAtConnectionLimit(t *testing.T) {
	const maxConns = 3
	cert, pool := selfSigned(t)
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "TLS"}[useTLS], func(t *testing.T) {
			cfg := Config{MaxConns: maxConns}
			if useTLS {
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ts := startTCP(t, cfg, newTestCache(t, newImage().origin, nil), nil)
			dial := func() net.Conn {
				c := dialRaw(t, ts.addr)
				if useTLS {
					c = deadlined(t, tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
				}
				return c
			}
			var lim *limitListener
			if useTLS {
				// limit probes over plain TCP, which a TLS server does not answer.
				c := dial()
				sendRaw(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				readRaw(t, bufio.NewReader(c), "GET")
				ts.mu.Lock()
				lim = ts.limits[0]
				ts.mu.Unlock()
				waitOpen(t, lim, 0)
			} else {
				lim = ts.limit(t)
			}
			for range maxConns {
				c := dial()
				// A request answered: the connection holds its slot.
				sendRaw(t, c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
				readRaw(t, bufio.NewReader(c), "GET")
			}
			waitOpen(t, lim, maxConns)

			tests := []struct {
				method, path string
				notReady     bool
				wantStatus   int
				wantBody     string // "" with wantCode: OCI error JSON
				wantCode     string
			}{
				{method: "GET", path: "/healthz", wantStatus: 200, wantBody: "ok\n"},
				{method: "HEAD", path: "/healthz", wantStatus: 200},
				{method: "GET", path: "/readyz", wantStatus: 200, wantBody: "ready\n"},
				{method: "GET", path: "/readyz?verbose", wantStatus: 200, wantBody: "ready\n"},
				{method: "GET", path: "/readyz", notReady: true, wantStatus: 503, wantBody: "not ready\n"},
				{method: "HEAD", path: "/readyz", notReady: true, wantStatus: 503},
				{method: "GET", path: "/healthz", notReady: true, wantStatus: 200, wantBody: "ok\n"},
				{method: "GET", path: "/v2/", wantStatus: 503, wantCode: oci.CodeUnavailable},
				{method: "GET", path: "/v2/alpine/manifests/latest", wantStatus: 503, wantCode: oci.CodeUnavailable},
				{method: "POST", path: "/healthz", wantStatus: 503, wantCode: oci.CodeUnavailable},
				{method: "GET", path: "/healthz/", wantStatus: 503, wantCode: oci.CodeUnavailable},
			}
			for _, tt := range tests {
				ts.SetReady(!tt.notReady)
				c := dial()
				sendRaw(t, c, tt.method+" "+tt.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
				br := bufio.NewReader(c)
				resp, body := readRaw(t, br, tt.method)
				if resp.StatusCode != tt.wantStatus {
					t.Errorf("%s %s (ready %v): status %d, want %d", tt.method, tt.path, !tt.notReady, resp.StatusCode, tt.wantStatus)
				}
				switch {
				case tt.wantCode != "":
					if code := errorCode(t, body); code != tt.wantCode || resp.Header.Get(apiVersionHeader) != apiVersion {
						t.Errorf("%s %s: %q (%s %q), want OCI error %s", tt.method, tt.path, body, apiVersionHeader, resp.Header.Get(apiVersionHeader), tt.wantCode)
					}
				case tt.method == "HEAD":
					if len(body) != 0 || resp.ContentLength <= 0 {
						t.Errorf("HEAD %s: %d body bytes, Content-Length %d", tt.path, len(body), resp.ContentLength)
					}
				case string(body) != tt.wantBody:
					t.Errorf("%s %s: body %q, want %q", tt.method, tt.path, body, tt.wantBody)
				}
				if _, err := br.ReadByte(); err == nil {
					t.Errorf("%s %s: connection not closed after its answer", tt.method, tt.path)
				}
				c.Close()
			}
			if n := lim.open(); n != maxConns {
				t.Errorf("%d connections held, want the %d that took the slots", n, maxConns)
			}
		})
	}
}

// TestRefuserBounded: at most maxRefusing refused connections are read at
// once; one more is answered 503 at once, unread, and close ends those
// still being read.
func TestRefuserBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRefuser(nil, func() bool { return true })
	// pair returns the client end of a new connection and hands the server
	// end to the refuser.
	pair := func() net.Conn {
		c := dialRaw(t, ln.Addr().String())
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		r.refuse(s)
		return c
	}
	for range maxRefusing {
		pair() // sends nothing: holds its slot until its deadline
	}
	if n := len(r.slots); n != maxRefusing {
		t.Fatalf("%d connections being read, want %d", n, maxRefusing)
	}
	// One more is not read: it is answered at once, without having sent a
	// request, and is not among the connections being read.
	extra := pair()
	resp, body := readRaw(t, bufio.NewReader(extra), "GET")
	if resp.StatusCode != 503 || errorCode(t, body) != oci.CodeUnavailable {
		t.Errorf("beyond maxRefusing: %d %s, want 503 UNAVAILABLE", resp.StatusCode, body)
	}
	r.mu.Lock()
	reading := len(r.conns)
	r.mu.Unlock()
	if reading != maxRefusing {
		t.Errorf("%d connections being read, want %d", reading, maxRefusing)
	}
	// close ends the reads of the silent ones (goleak checks their
	// goroutines are gone) and gives every slot back.
	r.close()
	if n := len(r.slots); n != 0 {
		t.Errorf("%d slots taken after close", n)
	}
	// A connection refused after close is closed at once.
	late := pair()
	if b, err := bufio.NewReader(late).ReadByte(); err == nil {
		t.Errorf("a connection refused after close got %q", b)
	}
}
