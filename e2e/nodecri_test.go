//go:build linux

package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
)

// TestNodeCheckAsksContainerd: cacheyd node --check asks the node's
// containerd (1.6 and 2, the CRI plugin on) what it reads. With
// config_path the certs dir, the check passes and prints the version the
// socket says; with config_path left out of containerd's configuration,
// the same files on disk no longer count: containerd 1.6 reads no
// hosts.toml (config-path-unset) and containerd 2 reads its default list
// of two directories (config-path-list), and the check exits non-zero.
func TestNodeCheckAsksContainerd(t *testing.T) {
	bin := buildCacheyd(t)
	// The mirror only has to answer GET /v2/: nothing is pulled here.
	mirror := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(mirror.Close)
	for _, tt := range []struct {
		name      string
		bin       func(testing.TB) string // containerd's directory, "" for PATH
		version   string
		wantUnset string // the kind --check names without config_path
	}{
		{name: "containerd 1.6", bin: func(testing.TB) string { return "" }, version: "1.6", wantUnset: "config-path-unset"},
		{name: "containerd 2", bin: containerdtest.V2Bin, version: "2.4", wantUnset: "config-path-list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.bin(t)
			for _, c := range []struct {
				name       string
				configPath bool
				wantOK     bool
				want       string
			}{
				{name: "config_path the certs dir", configPath: true, wantOK: true, want: "OK: containerd pulls through the mirror"},
				{name: "config_path unset", want: tt.wantUnset + ": "},
			} {
				certs := t.TempDir()
				cfg := containerdtest.Config{Namespace: "k8s.io", Bin: dir, CRI: true}
				if c.configPath {
					cfg.HostsDir = certs
				}
				node := containerdtest.StartWith(t, cfg)
				args := []string{"node", "--certs-dir", certs, "--mirror", mirror.URL, "--containerd-version", tt.version, "--registries", "registry.invalid"}
				if out, err := command(t, bin, args...); err != nil {
					t.Fatalf("%s: cacheyd %s: %v\n%s", c.name, strings.Join(args, " "), err, out)
				}
				check := append(args, "--check", "--containerd-socket", node.Address)
				out, err := command(t, bin, check...)
				if (err == nil) != c.wantOK {
					t.Errorf("%s: cacheyd node --check: err %v, want OK %v:\n%s", c.name, err, c.wantOK, out)
				}
				if !strings.Contains(out, c.want) {
					t.Errorf("%s: cacheyd node --check printed\n%s\nwant %q in it", c.name, out, c.want)
				}
				_, said, _ := strings.Cut(out, "containerd's socket says version ")
				if said, _, _ = strings.Cut(said, "\n"); !strings.Contains(said, tt.version+".") {
					t.Errorf("%s: cacheyd node --check printed\n%s\nwant the socket's version, %s.x, in it", c.name, out, tt.version)
				}
				t.Logf("%s:\n%s", c.name, out)
			}
		})
	}
}
