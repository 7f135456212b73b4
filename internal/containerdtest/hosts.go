package containerdtest

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// WriteHostsDir writes <dir>/<registryHost>/hosts.toml so that pulls of
// images named registryHost/... try mirrorURL first and fall back to the
// registry itself over plain HTTP. registryHost is host[:port] as it appears
// in image references (for example "localhost:5000", which is also the folder
// name); mirrorURL is an http or https URL such as "http://127.0.0.1:30123".
//
// The fallback means a broken mirror does not fail a pull: tests that must
// prove the pull went through the mirror check what the registry saw.
func WriteHostsDir(t testing.TB, dir, registryHost, mirrorURL string) {
	t.Helper()
	body, err := HostsTOML(registryHost, mirrorURL)
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	folder := filepath.Join(dir, registryHost)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatalf("containerdtest: hosts dir for %s: %v", registryHost, err)
	}
	if err := os.WriteFile(filepath.Join(folder, "hosts.toml"), body, 0o644); err != nil {
		t.Fatalf("containerdtest: hosts.toml for %s: %v", registryHost, err)
	}
}

// HostsTOML returns the hosts.toml that WriteHostsDir writes.
func HostsTOML(registryHost, mirrorURL string) ([]byte, error) {
	if registryHost == "" || filepath.Base(registryHost) != registryHost {
		return nil, fmt.Errorf("hosts.toml: registry host %q is not a single path element", registryHost)
	}
	u, err := url.Parse(mirrorURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hosts.toml for %s: mirror %q is not an http(s) URL", registryHost, mirrorURL)
	}
	// The [host] table is what makes containerd use the mirror; "resolve"
	// lets it resolve tags there too, as a node would.
	return fmt.Appendf(nil, "server = %s\n\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n",
		strconv.Quote("http://"+registryHost), strconv.Quote(mirrorURL)), nil
}

// WriteDefaultHostsDir writes <dir>/_default/hosts.toml, and nothing else,
// so that pulls of every registry try mirrorURL first and fall back to the
// registry the image names: what a node of containerd 1.7 or 2.x is given
// (containerd 1.6 does not read _default).
func WriteDefaultHostsDir(t testing.TB, dir, mirrorURL string) {
	t.Helper()
	body, err := DefaultHostsTOML(mirrorURL)
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	folder := filepath.Join(dir, "_default")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatalf("containerdtest: hosts dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(folder, "hosts.toml"), body, 0o644); err != nil {
		t.Fatalf("containerdtest: _default/hosts.toml: %v", err)
	}
}

// DefaultHostsTOML returns the _default/hosts.toml that WriteDefaultHostsDir
// writes: one [host] table, no server line (the registry itself stays the
// last host tried).
func DefaultHostsTOML(mirrorURL string) ([]byte, error) {
	u, err := url.Parse(mirrorURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("_default/hosts.toml: mirror %q is not an http(s) URL", mirrorURL)
	}
	return fmt.Appendf(nil, "[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n", strconv.Quote(mirrorURL)), nil
}
