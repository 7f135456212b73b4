package containerdtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHostsTOML(t *testing.T) {
	tests := []struct {
		name, host, mirror string
		want               string // "" means an error is expected
	}{
		{
			name: "loopback registry and mirror", host: "localhost:5000", mirror: "http://127.0.0.1:30123",
			want: "server = \"http://localhost:5000\"\n\n" +
				"[host.\"http://127.0.0.1:30123\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
		},
		{
			name: "https mirror", host: "example.test", mirror: "https://mirror.test:8443",
			want: "server = \"http://example.test\"\n\n" +
				"[host.\"https://mirror.test:8443\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
		},
		{name: "empty host", host: "", mirror: "http://127.0.0.1:1"},
		{name: "host with a slash", host: "a/b", mirror: "http://127.0.0.1:1"},
		{name: "mirror without scheme", host: "localhost:5000", mirror: "127.0.0.1:30123"},
		{name: "mirror of another scheme", host: "localhost:5000", mirror: "unix:///run/x.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HostsTOML(tt.host, tt.mirror)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("HostsTOML(%q, %q) = %q, want an error", tt.host, tt.mirror, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("HostsTOML(%q, %q): %v", tt.host, tt.mirror, err)
			}
			if string(got) != tt.want {
				t.Errorf("HostsTOML(%q, %q) =\n%s\nwant\n%s", tt.host, tt.mirror, got, tt.want)
			}
		})
	}
}

func TestWriteHostsDir(t *testing.T) {
	dir := t.TempDir()
	WriteHostsDir(t, dir, "localhost:5000", "http://127.0.0.1:30123")
	got, err := os.ReadFile(filepath.Join(dir, "localhost:5000", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := HostsTOML("localhost:5000", "http://127.0.0.1:30123")
	if string(got) != string(want) {
		t.Errorf("hosts.toml =\n%s\nwant\n%s", got, want)
	}
}

func TestWriteDefaultHostsDir(t *testing.T) {
	dir := t.TempDir()
	WriteDefaultHostsDir(t, dir, "http://127.0.0.1:30123")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "_default" {
		t.Fatalf("hosts dir holds %v (%v), want only _default", entries, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "_default", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[host.\"http://127.0.0.1:30123\"]\n  capabilities = [\"pull\", \"resolve\"]\n"; string(got) != want {
		t.Errorf("_default/hosts.toml =\n%s\nwant\n%s", got, want)
	}
	if _, err := DefaultHostsTOML("127.0.0.1:1"); err == nil {
		t.Error("DefaultHostsTOML accepted a mirror without a scheme")
	}
}
