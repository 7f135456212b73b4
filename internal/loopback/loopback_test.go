package loopback

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfined: inside, localhost and the names given resolve to
// 127.0.0.1, and any other name does not resolve at all, whatever the
// machine's own resolver would say; the machine's files stay as they are.
func TestConfined(t *testing.T) {
	getent := Need(t, "getent", "it ships with libc (Debian: libc-bin)")
	run := func(args ...string) (string, error) {
		t.Helper()
		c, err := New(t.TempDir(), "registry.localhost")
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Command(t.Context(), getent, args...).CombinedOutput()
		return string(out), err
	}
	for _, name := range []string{"localhost", "registry.localhost"} {
		out, err := run("ahostsv4", name)
		if err != nil || !strings.HasPrefix(out, "127.0.0.1 ") {
			t.Errorf("confined getent ahostsv4 %s = %q, %v; want 127.0.0.1", name, out, err)
		}
	}
	for _, name := range []string{"registry-1.docker.io", "example.com", "ghcr.io"} {
		out, err := run("hosts", name)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || len(strings.TrimSpace(out)) != 0 {
			t.Errorf("confined getent hosts %s = %q, %v; want no answer", name, out, err)
		}
	}
	// The machine's own hosts file never learnt the name.
	if b, err := os.ReadFile("/etc/hosts"); err == nil && strings.Contains(string(b), "registry.localhost") {
		t.Errorf("/etc/hosts of the machine names registry.localhost:\n%s", b)
	}
}

func TestCommandRefusesBadNames(t *testing.T) {
	for _, n := range []string{"", "a b", "a\nb", "a#b"} {
		if _, err := New(t.TempDir(), n); err == nil {
			t.Errorf("New accepted host name %q", n)
		}
	}
}

// TestBind: a bound file replaces the machine's for the confined program
// only; a target the machine lacks fails the command.
func TestBind(t *testing.T) {
	cat := Need(t, "cat", "it ships with coreutils")
	dir := t.TempDir()
	c, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "mine")
	if err := os.WriteFile(src, []byte("confined\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "theirs")
	if err := os.WriteFile(target, []byte("machine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Bind(src, target)
	out, err := c.Command(t.Context(), cat, target).CombinedOutput()
	if err != nil || string(out) != "confined\n" {
		t.Errorf("confined cat %s = %q, %v; want the bound file", target, out, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "machine\n" {
		t.Errorf("the machine's %s reads %q after the confined run", target, b)
	}
	c.Bind(src, filepath.Join(dir, "missing"))
	if out, err := c.Command(t.Context(), cat, target).CombinedOutput(); err == nil {
		t.Errorf("a bind over a missing target ran: %q", out)
	}
}
