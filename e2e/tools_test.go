//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/loopback"
)

// podman and skopeo (containers/image) pull through a registries.conf
// mirror whose location carries the registry's name as a path prefix,
// which cacheyd reads as the registry. Their references cannot hold a
// port in a path component, so the registry the images are named after is
// registryName, a loopback name by definition (RFC 6761) that the
// confinement maps to 127.0.0.1 and cacheyd maps to the test registry
// (--registry-url). Going around the mirror would reach port 443 on
// loopback, where nothing of the test listens, and fail.
const registryName = "registry.localhost"

// containersTool runs a containers/image program (podman, skopeo) of one
// test: confined, with a registries.conf of its own and a throwaway
// policy and containers.conf, so that nothing of the machine's
// configuration applies.
type containersTool struct {
	path    string
	dir     string
	confine *loopback.Confinement
	env     []string
}

// newContainersTool finds program (skipping or failing t as loopback.Need
// says) and writes its configuration, which the confined program sees in
// /etc/containers and in the environment: registryName's mirror is mirror
// (host:port/registryName, cacheyd's path-prefix route), over plain HTTP;
// the registry itself is not insecure, so a fallback to it could not even
// speak to the test registry.
func newContainersTool(t *testing.T, program, mirror string) *containersTool {
	t.Helper()
	path := loopback.Need(t, program, "install it (Debian: apt-get install "+program+") to run this test")
	dir := t.TempDir()
	conf := fmt.Sprintf(`unqualified-search-registries = []
short-name-mode = "disabled"

[[registry]]
prefix = %[1]s
location = %[1]s

[[registry.mirror]]
location = %[2]s
insecure = true
`, strconv.Quote(registryName), strconv.Quote(mirror))
	files := map[string]string{
		"registries.conf": conf,
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}` + "\n",
		"containers.conf": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	confine, err := loopback.New(dir, registryName)
	if err != nil {
		t.Fatal(err)
	}
	// skopeo 1.9 reads registries.conf only from its fixed path (it has
	// no flag for it and ignores CONTAINERS_REGISTRIES_CONF): the
	// confined program sees this test's there, and nothing in the
	// drop-in directory beside it (Debian ships short-name aliases).
	empty := filepath.Join(dir, "registries.conf.d")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, target := range map[string]string{
		filepath.Join(dir, "registries.conf"): "/etc/containers/registries.conf",
		empty:                                 "/etc/containers/registries.conf.d",
	} {
		if _, err := os.Stat(target); err != nil {
			t.Fatalf("%s is not installed as containers-common installs it: %v", target, err)
		}
		confine.Bind(src, target)
	}
	tmp, run := filepath.Join(dir, "tmp"), filepath.Join(dir, "run")
	for _, d := range []string{tmp, run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env := loopback.CleanEnv(
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"TMPDIR="+tmp,
		"HOME="+dir, // no auth.json or per-user configuration of the machine's
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_RUNTIME_DIR="+run,
	)
	return &containersTool{path: path, dir: dir, confine: confine, env: env}
}

// policy is the signature policy file, for a tool's --policy or
// --signature-policy.
func (c *containersTool) policy() string { return filepath.Join(c.dir, "policy.json") }

// run runs the tool with args, bounded by two minutes and t's context, and
// returns its stdout; the error carries its stderr.
func (c *containersTool) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := c.confine.Command(ctx, c.path, args...)
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\nstderr:\n%s", filepath.Base(c.path), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustRun is run that fails t on an error.
func (c *containersTool) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
