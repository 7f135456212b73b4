package app

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/logtest"
)

// TestStartLine: the start-up line says which registries are served and
// which are fetched from another URL, the first thing an operator checks
// when content does not come from where they meant.
func TestStartLine(t *testing.T) {
	tests := []struct {
		name       string
		registries []string
		urls       map[string]string
		want       map[string]string // attribute → value
	}{
		{
			name: "no flags",
			want: map[string]string{"registries": "every public registry", "registry_urls": "none"},
		},
		{
			name:       "an allow-list and mappings",
			registries: []string{"docker.io", "ghcr.io"},
			urls:       map[string]string{"ghcr.io": "http://127.0.0.1:5001", "docker.io": "https://mirror.internal"},
			want: map[string]string{
				"registries":    "docker.io,ghcr.io",
				"registry_urls": "docker.io=https://mirror.internal,ghcr.io=http://127.0.0.1:5001",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logtest.Buffer
			cfg := Defaults()
			cfg.Listen, cfg.ShutdownTimeout = "127.0.0.1:0", 5*time.Second
			cfg.Cache.Dir, cfg.Cache.MemoryBytes, cfg.Cache.DiskBytes = t.TempDir(), 16<<20, 1<<30
			cfg.Server.Registries, cfg.Upstream.RegistryURLs = tt.registries, tt.urls
			_, stop, err := Start(t.Context(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = stop() })
			var line map[string]any
			for l := range bytes.Lines(logs.Bytes()) {
				var m map[string]any
				if err := json.Unmarshal(l, &m); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				if m["msg"] == "listening" {
					line = m
				}
			}
			if line == nil {
				t.Fatalf("no start-up line in:\n%s", logs.Bytes())
			}
			for k, v := range tt.want {
				if line[k] != v {
					t.Errorf("%s=%v, want %q", k, line[k], v)
				}
			}
		})
	}
}
