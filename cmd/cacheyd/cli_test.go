package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
	"github.com/cacheyd/cacheyd/internal/app"
	"github.com/cacheyd/cacheyd/upstream"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func parse(t *testing.T, args []string, env map[string]string) (*cli, string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var c cli
	var out bytes.Buffer
	p, err := newParser(&c, kong.Writers(&out, &out), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := p.Parse(args)
	if err != nil {
		return &c, "", err
	}
	return &c, ctx.Command(), nil
}

func TestDefaultsNeedNoFlags(t *testing.T) {
	c, cmd, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cmd != "serve" {
		t.Errorf("command %q, want serve", cmd)
	}
	want := serveFlags{
		Listen: ":30123", ShutdownTimeout: 30 * time.Second, MemoryBytes: 256 << 20, MemoryMaxObject: 1 << 20,
		DiskBytes: 20 << 30, TagTTL: time.Minute, TagStaleMax: 24 * time.Hour, FillTimeout: 30 * time.Minute,
		MaxFills: 256, MaxFillsPerReg: 64, FillStall: 10 * time.Second, FillChunk: 16 << 20, FillParallel: 4, ReadMemory: 64 << 20,
		DefaultRegistry: "docker.io", UpstreamHeaderTimeout: 5 * time.Second, LogLevel: "info", LogFormat: "text",
		AlternateMode: "prefer", S3Prefix: "cacheyd/", S3Timeout: 5 * time.Second,
	}
	got := c.serveFlags
	got.RegistryURL = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	dir, err := c.ResolvedCacheDir()
	if err != nil || !strings.HasSuffix(dir, "/cacheyd") {
		t.Errorf("default cache dir %q, %v", dir, err)
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(f serveFlags) bool
	}{
		{"serve is explicit too", []string{"serve", "--listen", "127.0.0.1:1"}, nil,
			func(f serveFlags) bool { return f.Listen == "127.0.0.1:1" }},
		{"sizes in human form", []string{"--memory-bytes", "512MiB", "--disk-bytes", "1.5GiB"}, nil,
			func(f serveFlags) bool { return f.MemoryBytes == 512<<20 && f.DiskBytes == 3<<29 }},
		{"env twin", nil, map[string]string{"CACHEYD_DISK_BYTES": "2GiB", "CACHEYD_LOG_FORMAT": "json"},
			func(f serveFlags) bool { return f.DiskBytes == 2<<30 && f.LogFormat == "json" }},
		{"flag wins over env", []string{"--listen", ":1"}, map[string]string{"CACHEYD_LISTEN": ":2"},
			func(f serveFlags) bool { return f.Listen == ":1" }},
		{"registry-url repeats", []string{"--registry-url", "docker.io=http://127.0.0.1:5000", "--registry-url", "ghcr.io=https://m.internal"}, nil,
			func(f serveFlags) bool {
				return f.RegistryURL["docker.io"] == "http://127.0.0.1:5000" && f.RegistryURL["ghcr.io"] == "https://m.internal"
			}},
		{"registry-url from env", nil, map[string]string{"CACHEYD_REGISTRY_URL": "a.io=http://x;b.io=http://y"},
			func(f serveFlags) bool { return len(f.RegistryURL) == 2 && f.RegistryURL["b.io"] == "http://y" }},
		{"upstream header timeout", []string{"--upstream-header-timeout", "750ms"}, nil,
			func(f serveFlags) bool {
				return f.UpstreamHeaderTimeout == 750*time.Millisecond &&
					f.UpstreamConfig(nil, nil).ResponseHeaderTimeout == 750*time.Millisecond
			}},
		{"read memory", []string{"--read-memory", "128MiB"}, nil,
			func(f serveFlags) bool { return f.ReadMemory == 128<<20 }},
		{"read memory from env", nil, map[string]string{"CACHEYD_READ_MEMORY": "32MiB"},
			func(f serveFlags) bool {
				cfg, err := f.Config()
				return err == nil && f.ReadMemory == 32<<20 && cfg.Cache.ReadMemory == 32<<20
			}},
		{"alternate repeats, in order", []string{"--alternate", "docker.io=https://mirror.gcr.io", "--alternate", "index.docker.io=https://public.ecr.aws/docker"}, nil,
			func(f serveFlags) bool {
				cfg, err := f.Config()
				want := []app.Alternate{{Registry: "docker.io", URL: "https://mirror.gcr.io"}, {Registry: "docker.io", URL: "https://public.ecr.aws/docker"}}
				return err == nil && cmp.Equal(cfg.Alternates, want) && cfg.AlternateMode == "prefer"
			}},
		{"alternate from env", nil, map[string]string{"CACHEYD_ALTERNATE": "docker.io=https://a.example,ghcr.io=https://b.example/ghcr"},
			func(f serveFlags) bool {
				cfg, err := f.Config()
				want := []app.Alternate{{Registry: "docker.io", URL: "https://a.example"}, {Registry: "ghcr.io", URL: "https://b.example/ghcr"}}
				return err == nil && cmp.Equal(cfg.Alternates, want)
			}},
		{"fallback with a reserve", []string{"--alternate-mode", "fallback", "--budget-reserve", "20"}, nil,
			func(f serveFlags) bool {
				cfg, err := f.Config()
				return err == nil && cfg.AlternateMode == "fallback" && cfg.BudgetReserve == 20
			}},
		{"budget reserve from env", nil, map[string]string{"CACHEYD_ALTERNATE_MODE": "fallback", "CACHEYD_BUDGET_RESERVE": "5"},
			func(f serveFlags) bool {
				cfg, err := f.Config()
				return err == nil && cfg.AlternateMode == "fallback" && cfg.BudgetReserve == 5
			}},
		{"alternate tags off by default", []string{"--alternate", "docker.io=https://mirror.gcr.io"}, nil,
			func(f serveFlags) bool {
				cfg, err := f.Config()
				return err == nil && !cfg.AlternateTags
			}},
		{"alternate tags from env", nil, map[string]string{"CACHEYD_ALTERNATE_TAGS": "true"},
			func(f serveFlags) bool {
				cfg, err := f.Config()
				return err == nil && cfg.AlternateTags
			}},
		{"upstream header timeout from env", nil, map[string]string{"CACHEYD_UPSTREAM_HEADER_TIMEOUT": "2s"},
			func(f serveFlags) bool {
				return f.UpstreamHeaderTimeout == 2*time.Second && f.UpstreamConfig(nil, nil).ResponseHeaderTimeout == 2*time.Second
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parse(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c.serveFlags) {
				t.Errorf("flags: %+v", c.serveFlags)
			}
		})
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--memory-bytes", "lots"},
		{"--log-format", "xml"},
		{"--log-level", "chatty"},
		{"--tag-ttl", "soon"},
		{"--upstream-header-timeout", "soon"},
		{"--alternate-mode", "sometimes"},
		{"--budget-reserve", "lots"},
	} {
		if _, _, err := parse(t, args, nil); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := daemon.RegistryURLs(map[string]string{"not a host": "http://x"}); err == nil {
		t.Error("invalid --registry-url name accepted")
	}
	for _, alt := range []string{"docker.io", "not a host=https://x", "docker.io="} {
		if _, err := daemon.Alternates([]string{alt}); err == nil {
			t.Errorf("--alternate %q accepted", alt)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	if _, cmd, err := parse(t, []string{"version"}, nil); err != nil || cmd != "version" {
		t.Errorf("version: %q %v", cmd, err)
	}
}

// TestFlagDefaultsAreTheAppDefaults: cacheyd started with no flags is
// app.Defaults, the configuration the benchmark and the tests start too, so
// the two cannot drift apart.
func TestFlagDefaultsAreTheAppDefaults(t *testing.T) {
	c, _, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.serveFlags.Config()
	if err != nil {
		t.Fatal(err)
	}
	want := app.Defaults()
	// What is the command's own: where the cache lives, the version it
	// reports, the empty maps and lists of unset flags.
	want.Cache.Dir = got.Cache.Dir
	want.Upstream.UserAgent = got.Upstream.UserAgent
	want.Server.Status = got.Server.Status
	opts := []cmp.Option{cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(upstream.Config{}), cmpopts.IgnoreFields(upstream.Config{}, "Resolver", "Transport", "TLSConfig")}
	if diff := cmp.Diff(want, got, opts...); diff != "" {
		t.Errorf("flag defaults differ from app.Defaults (-app +flags):\n%s", diff)
	}
}
