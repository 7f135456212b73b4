package containerdtest

import (
	"strconv"
	"strings"
	"testing"
)

func TestServerVersion(t *testing.T) {
	tests := []struct{ name, out, want string }{
		{"ctr version output", "Client:\n  Version:  1.6.20\n  Revision: x\n\nServer:\n  Version:  1.7.1\n  Revision: y\n  UUID: z\n", "1.7.1"},
		{"no server section", "Client:\n  Version:  1.6.20\n", "(unknown version)"},
		{"no version line", "Server:\n  UUID: z\n", "(unknown version)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serverVersion(tt.out); got != tt.want {
				t.Errorf("serverVersion(%q) = %q, want %q", tt.out, got, tt.want)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
	}
	for _, tt := range tests {
		if got := tail(tt.s, tt.n); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestMajorVersion(t *testing.T) {
	for out, want := range map[string]int{
		"containerd github.com/containerd/containerd/v2 2.4.2+unknown \n":               2,
		"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n": 1,
		"containerd containerd.io v1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n":   1,
		"something else": 0,
	} {
		if got := majorVersion(out); got != want {
			t.Errorf("majorVersion(%q) = %d, want %d", out, got, want)
		}
	}
}

func TestDaemonConfig(t *testing.T) {
	v1 := daemonConfig(1, "/r", "/s", "/c.sock", Config{HostsDir: "/h"})
	v2 := daemonConfig(2, "/r", "/s", "/c.sock", Config{HostsDir: "/h", MaxConcurrentDownloads: 3, ConcurrentLayerFetchBuffer: 65536})
	for _, want := range []string{"version = 2\n", `root = "/r"`, `address = "/c.sock"`} {
		if !strings.Contains(v1, want) {
			t.Errorf("1.x config lacks %q:\n%s", want, v1)
		}
	}
	if strings.Contains(v1, "transfer") {
		t.Errorf("1.x config configures a transfer service:\n%s", v1)
	}
	for _, want := range []string{"version = 3\n", `"io.containerd.transfer.v1.local"`, `config_path = "/h"`,
		"max_concurrent_downloads = 3\n", "concurrent_layer_fetch_buffer = 65536\n", `snapshotter = "native"`} {
		if !strings.Contains(v2, want) {
			t.Errorf("2.x config lacks %q:\n%s", want, v2)
		}
	}
}

func TestDaemonConfigWithCRI(t *testing.T) {
	tests := []struct {
		major int
		want  []string
	}{
		{1, []string{`"io.containerd.grpc.v1.cri"]`, "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/h\"\n", "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n", `bin_dir = "/cni-bin"`}},
		{2, []string{"[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/h\"\n", "[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"native\"\n", `bin_dirs = ["/cni-bin"]`}},
	}
	for _, tt := range tests {
		conf := daemonConfig(tt.major, "/r", "/s", "/c.sock", Config{HostsDir: "/h", CRI: true})
		for _, want := range tt.want {
			if !strings.Contains(conf, want) {
				t.Errorf("%d.x config with CRI lacks %q:\n%s", tt.major, want, conf)
			}
		}
		disabled, _, _ := strings.Cut(conf, "required_plugins")
		for _, p := range criNeeds {
			if strings.Contains(disabled, strconv.Quote(p)) {
				t.Errorf("%d.x config with CRI disables %s:\n%s", tt.major, p, conf)
			}
		}
	}
	if plain := daemonConfig(2, "/r", "/s", "/c.sock", Config{}); !strings.Contains(plain, `"io.containerd.grpc.v1.cri"`) || strings.Contains(plain, "cri.v1.images\"]\n") {
		t.Errorf("2.x config without CRI does not disable it:\n%s", plain)
	}
}
