package loopback

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Need finds program on PATH, or at path when it holds a slash, for t.
// When it is missing, or the test does not run as root (a mount namespace
// needs it, and so do the daemons), t is skipped with install, the way to
// get it; under CI=true it fails instead.
func Need(t testing.TB, program, install string) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	path, err := exec.LookPath(program)
	if err != nil {
		fail("loopback: %s is not installed (%v); %s", program, err, install)
		return ""
	}
	if os.Geteuid() != 0 {
		fail("loopback: %s must run as root here (a mount namespace of its own, a root of its own); run this test as root", program)
		return ""
	}
	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail("loopback: %s is needed to confine %s (%v); it ships with util-linux (Debian: apt-get install util-linux mount)", tool, program, err)
			return ""
		}
	}
	return path
}

// Resolver files, as a confined program sees them. The nameserver is on
// loopback, where nothing answers DNS: a lookup of any other name fails at
// once.
const (
	resolvConf   = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"
	nsswitchConf = "hosts: files dns\nnetworks: files\n"
)

// confineScript runs inside the new mount namespace. Its arguments are a
// count of mounts, then for each: "need" or "opt", a source and a target
// that it is bound over ("opt": only where the machine has the target;
// without /etc/resolv.conf both Go's and glibc's resolvers ask 127.0.0.1
// already), then the program and its arguments, which it execs, so the
// program keeps the PID.
const confineScript = `set -e
n=$1; shift
while [ "$n" -gt 0 ]; do
	if [ -e "$3" ]; then
		mount --bind "$2" "$3"
	elif [ "$1" = need ]; then
		echo "loopback: $3 does not exist to bind $2 over" >&2; exit 1
	fi
	shift 3; n=$((n-1))
done
exec "$@"`

// mount is one bind mount of a Confinement.
type mount struct {
	need        bool // the target must exist
	src, target string
}

// Confinement is a set of resolver files for confined programs: names
// resolve only to loopback (localhost, and each name given, on 127.0.0.1).
// Its Command is safe for concurrent use.
type Confinement struct {
	mounts []mount // the resolver files, then Bind's
}

// New writes a Confinement's resolver files to dir.
func New(dir string, names ...string) (*Confinement, error) {
	hosts := "127.0.0.1 localhost\n"
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, " \t\r\n#") {
			return nil, fmt.Errorf("loopback: host name %q", n)
		}
		hosts += "127.0.0.1 " + n + "\n"
	}
	c := &Confinement{}
	for _, f := range []struct{ name, body string }{
		{"resolv.conf", resolvConf}, {"hosts", hosts}, {"nsswitch.conf", nsswitchConf},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			return nil, fmt.Errorf("loopback: %w", err)
		}
		c.mounts = append(c.mounts, mount{src: p, target: "/etc/" + f.name})
	}
	return c, nil
}

// Bind makes confined programs see src at target, which must exist on the
// machine (a file over a file, a directory over a directory): for a
// program that reads its configuration only from a fixed path. Call it
// before Command.
func (c *Confinement) Bind(src, target string) {
	c.mounts = append(c.mounts, mount{need: true, src: src, target: target})
}

// Command returns a command running program with args confined, in a mount
// namespace of its own with c's resolver files. The caller sets the
// command's environment, output and attributes; the process it starts
// becomes program itself (unshare and the shell exec it), so signals sent
// to its PID reach program.
func (c *Confinement) Command(ctx context.Context, program string, args ...string) *exec.Cmd {
	full := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", confineScript, "loopback", strconv.Itoa(len(c.mounts))}
	for _, m := range c.mounts {
		mode := "opt"
		if m.need {
			mode = "need"
		}
		full = append(full, mode, m.src, m.target)
	}
	full = append(full, program)
	full = append(full, args...)
	return exec.CommandContext(ctx, "unshare", full...)
}

// CleanEnv is the environment without what would send a confined
// program's requests through a proxy (test registries are on loopback and
// must be reached directly), plus extra.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
