package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// TestAccessLineMatchesSlog holds the hand-written access line against
// slog's text handler given the attributes of the same exchange, for every
// field the line can have and the values that make slog quote.
func TestAccessLineMatchesSlog(t *testing.T) {
	start := time.Date(2026, 12, 2, 18, 30, 1, 987654321, time.UTC)
	dg := oci.Digest("sha256:" + strings.Repeat("ab", 32))
	digestReq := &oci.Request{Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
	tagReq := &oci.Request{Registry: "localhost:5000", Repository: "team/app", Reference: oci.Reference{Tag: "v1.2_x-y"}}
	v4 := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40123}
	cases := map[string]exchange{
		"memory hit":     {method: "GET", req: digestReq, kind: "manifest", status: 200, source: "memory", sent: 402, remote: v4},
		"tag, HEAD":      {method: "HEAD", req: tagReq, kind: "manifest", status: 200, source: "upstream", remote: v4},
		"range":          {method: "GET", req: digestReq, kind: "blob", status: 206, source: "disk", sent: 10, contentRange: "bytes 0-9/100", remote: v4},
		"closed":         {method: "GET", req: digestReq, kind: "blob", status: 200, source: "fill", sent: 8 << 20, closed: true, remote: v4},
		"error":          {method: "GET", req: tagReq, kind: "manifest", status: 502, source: "error", err: errors.New(`upstream: "503 Service Unavailable"` + "\n"), remote: v4},
		"unparsed path":  {method: "GET", kind: "other", path: `/v2/a b/"c"/` + strings.Repeat("x", 100), status: 404, remote: v4},
		"odd method":     {method: "BREW", kind: "other", status: 405, remote: v4},
		"empty method":   {kind: "other", status: 400, remote: v4},
		"quoted values":  {method: "GET", req: &oci.Request{Registry: "a=b", Repository: "caf\u00e9 x", Reference: oci.Reference{Tag: "\u00a0"}}, kind: "manifest", status: 200, remote: v4},
		"control bytes":  {method: "GET", req: &oci.Request{Registry: "r\x7f", Repository: "\xff\xfe", Reference: oci.Reference{Tag: "t\tx"}}, kind: "manifest", status: 200, remote: v4},
		"backslash":      {method: "GET", req: &oci.Request{Registry: `a\b`, Repository: "r", Reference: oci.Reference{Tag: "t"}}, kind: "manifest", status: 200, remote: v4},
		"health, quiet":  {method: "GET", kind: "health", quiet: true, status: 200, source: "", remote: v4},
		"ipv6":           {method: "GET", kind: "other", status: 404, remote: &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}},
		"ipv6 zone":      {method: "GET", kind: "other", status: 404, remote: &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}},
		"ipv4 in ipv6":   {method: "GET", kind: "other", status: 404, remote: &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 2}},
		"no ip":          {method: "GET", kind: "other", status: 404, remote: &net.TCPAddr{Port: 3}},
		"unix socket":    {method: "GET", kind: "other", status: 404, remote: &net.UnixAddr{Name: "/run/x y.sock", Net: "unix"}},
		"short digest":   {method: "GET", req: &oci.Request{Registry: "r", Repository: "p", Reference: oci.Reference{Digest: "sha256:abc"}}, kind: "blob", status: 404, remote: v4},
		"empty registry": {method: "GET", req: &oci.Request{Repository: "p", Reference: oci.Reference{Tag: "t"}}, kind: "manifest", status: 200, remote: v4},
	}
	zones := []*time.Location{time.UTC, time.FixedZone("X", 5*3600+1800), time.FixedZone("Y", -7*3600)}
	durations := []time.Duration{0, 1500 * time.Nanosecond, 999 * time.Millisecond, 2*time.Minute + 3*time.Second}
	for name, x := range cases {
		for _, loc := range zones {
			for _, d := range durations {
				x := x
				x.start = start.In(loc)
				now := x.start.Add(d)
				level := slog.LevelInfo
				if x.quiet {
					level = slog.LevelDebug
				}
				var want bytes.Buffer
				h := slog.NewTextHandler(&want, &slog.HandlerOptions{Level: slog.LevelDebug})
				r := slog.NewRecord(now, level, "request", 0)
				r.AddAttrs(x.attrs(now)...)
				if err := h.Handle(context.Background(), r); err != nil {
					t.Fatal(err)
				}
				if got := x.appendLine(nil, now, level); string(got) != want.String() {
					t.Errorf("%s, %v, %v:\n got %q\nwant %q", name, loc, d, got, want.String())
				}
			}
		}
	}
}

// lineWriter takes log lines as cacheyd's buffered log sink does, under a
// lock and copied, and keeps each Write as an entry unless discard is set
// (benchmarks), when it keeps only the last 64 KiB of bytes.
type lineWriter struct {
	discard bool
	mu      sync.Mutex // guards writes and buf
	writes  []string
	buf     []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.discard {
		w.writes = append(w.writes, string(p))
		return len(p), nil
	}
	if len(w.buf)+len(p) > 64<<10 {
		w.buf = w.buf[:0]
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *lineWriter) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// TestAccessLogWriter: with Config.AccessLog set, each request's line goes
// there whole in one Write and not through the Logger, at the levels the
// Logger enables: the polled health endpoint only at Debug.
func TestAccessLogWriter(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		t.Run(level.String(), func(t *testing.T) {
			var w lineWriter
			var viaSlog bytes.Buffer
			log := slog.New(slog.NewTextHandler(&viaSlog, &slog.HandlerOptions{Level: level}))
			ts := startServer(t, Config{Logger: log, AccessLog: &w}, cacheFunc(nil))
			for _, path := range []string{"/healthz", "/v2/", "/nope"} {
				ts.do(t, http.MethodGet, path, nil)
			}
			want := map[slog.Level][]string{
				slog.LevelDebug: {"/healthz", "/v2/", "/nope"},
				slog.LevelInfo:  {"/v2/", "/nope"},
			}[level]
			lines := w.lines()
			if len(lines) != len(want) {
				t.Fatalf("%d access lines at %v, want %d: %q", len(lines), level, len(want), lines)
			}
			for i, line := range lines {
				if !strings.HasPrefix(line, "time=") || !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 ||
					!strings.Contains(line, " msg=request method=GET ") {
					t.Errorf("line %d is not one whole access line: %q", i, line)
				}
				if want[i] == "/nope" && !strings.Contains(line, " status=404 ") {
					t.Errorf("line %d: %q, want status 404", i, line)
				}
			}
			if strings.Contains(viaSlog.String(), "msg=request") {
				t.Errorf("access lines went through the Logger too: %q", viaSlog.String())
			}
		})
	}
}
