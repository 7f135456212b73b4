package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeCommand runs "cacheyd node" as a node would: configure (the
// top-level --registries naming 1.6's directories), check, then remove,
// and checks each one's exit status and what it prints.
func TestNodeCommand(t *testing.T) {
	mirror := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(mirror.Close)
	dir := filepath.Join(t.TempDir(), "certs.d")
	nobody := filepath.Join(t.TempDir(), "containerd.sock")
	base := []string{"node", "--certs-dir", dir, "--mirror", mirror.URL, "--containerd-socket", ""}
	tests := []struct {
		name     string
		args     []string
		wantErr  bool
		wantOut  string
		wantJSON func(map[string]any) bool
	}{
		{name: "check before", args: []string{"--containerd-version", "2.1", "--check"}, wantErr: true, wantOut: "missing: _default"},
		{name: "configure 2.1", args: []string{"--containerd-version", "2.1"}, wantOut: "written   " + filepath.Join(dir, "_default", "hosts.toml")},
		{name: "configure 1.6", args: []string{"--registries", "docker.io,127.0.0.1:5000", "--containerd-version", "v1.6.20"}, wantOut: filepath.Join(dir, "127.0.0.1_5000_", "hosts.toml")},
		{name: "check 1.6", args: []string{"--registries", "docker.io,127.0.0.1:5000", "--containerd-version", "1.6", "--check"}, wantOut: "OK: containerd pulls through the mirror"},
		{name: "check no containerd", args: []string{"--containerd-version", "2.1", "--check", "--containerd-socket", nobody}, wantErr: true, wantOut: "containerd-unreachable: " + nobody + ": containerd not reachable at " + nobody},
		{name: "check json", args: []string{"--containerd-version", "2.1", "--check", "--json"}, wantJSON: func(m map[string]any) bool { return m["configured"] == true }},
		{name: "1.6 without registries", args: []string{"--containerd-version", "1.6"}, wantErr: true},
		{name: "remove", args: []string{"--remove", "--json"}, wantJSON: func(m map[string]any) bool { return len(m["files"].([]any)) == 3 }},
		{name: "check after", args: []string{"--containerd-version", "2.1", "--check"}, wantErr: true, wantOut: "missing: _default"},
	}
	for _, tt := range tests {
		c, cmd, err := parse(t, append(base, tt.args...), nil)
		if err != nil || cmd != "node" {
			t.Fatalf("%s: parse: %q, %v", tt.name, cmd, err)
		}
		var out bytes.Buffer
		err = c.Node.run(t.Context(), c.Registries, &out)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err %v, want error %v; printed:\n%s", tt.name, err, tt.wantErr, out.String())
		}
		if !strings.Contains(out.String(), tt.wantOut) {
			t.Errorf("%s: printed\n%s\nwant %q in it", tt.name, out.String(), tt.wantOut)
		}
		if tt.wantJSON != nil {
			var m map[string]any
			if err := json.Unmarshal(out.Bytes(), &m); err != nil || !tt.wantJSON(m) {
				t.Errorf("%s: JSON %s (%v)", tt.name, out.String(), err)
			}
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("left in the certs dir: %v, %v", entries, err)
	}
	if _, _, err := parse(t, append(base, "--check", "--remove"), nil); err == nil {
		t.Error("--check --remove accepted")
	}
}
