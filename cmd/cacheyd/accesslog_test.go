package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
	"github.com/cacheyd/cacheyd/internal/logtest"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestAccessLinesInEitherFormat runs serve as the command does with each
// --log-format: a blob's access line reaches the process log, in slog's
// text format (written by the server itself) or as JSON (through slog).
func TestAccessLinesInEitherFormat(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	dg := up.SeedBlob(t, "team/app", []byte("access line"))
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out logtest.Buffer
			log, access := daemon.NewLogger("info", format, &out)
			if (access != nil) != (format == "text") {
				t.Fatalf("%s: access writer %v", format, access)
			}
			flags := serveFlags{
				Listen: "127.0.0.1:0", CacheDir: t.TempDir(), MemoryBytes: 64 << 20, MemoryMaxObject: 1 << 20,
				DiskBytes: 1 << 30, DefaultRegistry: "docker.io", ShutdownTimeout: testShutdown,
				LogLevel: "info", LogFormat: format, RegistryURL: map[string]string{up.Host(): up.URL()},
			}
			ctx, cancel := context.WithCancel(t.Context())
			addr := make(chan net.Addr, 1)
			served := make(chan error, 1)
			// Stops when ctx is cancelled below.
			go func() { served <- flags.Serve(ctx, log, access, func(a net.Addr) { addr <- a }) }()
			var base string
			select {
			case a := <-addr:
				base = "http://" + a.String()
			case err := <-served:
				t.Fatalf("serve: %v", err)
			}
			resp, err := http.Get(base + "/v2/team/app/blobs/" + dg.String() + "?ns=" + url.QueryEscape(up.Host()))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cancel()
			if err := <-served; err != nil {
				t.Fatalf("serve: %v", err)
			}
			var lines []string
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, "request") && strings.Contains(l, "team/app") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d access lines for the blob, want 1:\n%s", len(lines), out.String())
			}
			line := lines[0]
			switch format {
			case "text":
				if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=INFO msg=request method=GET registry="+up.Host()+" repository=team/app ") ||
					!strings.Contains(line, " status=200 ") {
					t.Errorf("text access line %q", line)
				}
			case "json":
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] != "request" || m["repository"] != "team/app" || m["status"] != 200.0 {
					t.Errorf("JSON access line %q (%v)", line, err)
				}
			}
		})
	}
}
