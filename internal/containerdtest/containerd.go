package containerdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/loopback"
)

// errExited is a daemon that exited before the test stopped it.
var errExited = errors.New("exited during the test")

// maxSocketPath keeps the gRPC socket path under the kernel's limit for
// unix socket addresses (108 bytes on Linux, including the final NUL).
const maxSocketPath = 100

// Containerd is a running daemon that belongs to one test.
type Containerd struct {
	// Address is the daemon's gRPC socket.
	Address string
	// Namespace is the containerd namespace Ctr works in.
	Namespace string
	// Root and State are the daemon's directories; ConfigPath its
	// config.toml; LogPath the file its stdout and stderr go to.
	Root, State, ConfigPath, LogPath string

	// Major is the daemon's major version: 1 (Debian's 1.6) or 2.
	Major int

	ctr     string
	confine *loopback.Confinement // of the daemon and every ctr command
	timeout time.Duration         // bounds each ctr command
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // set before exited is closed
}

// Start runs a containerd daemon with the zero Config; see StartWith.
func Start(t testing.TB) *Containerd {
	t.Helper()
	return StartWith(t, Config{})
}

// StartWith runs a containerd daemon of its own for t, waits until it
// answers on its socket, and stops it (SIGTERM, then SIGKILL after a bounded
// wait) when t ends. When t has failed, the tail of the daemon's log is
// logged then. It skips or fails t as binaries describes when containerd
// cannot run here. The daemon and every ctr command run confined (package
// loopback): names resolve only to loopback.
func StartWith(t testing.TB, cfg Config) *Containerd {
	t.Helper()
	cfg = cfg.withDefaults()
	daemon, ctr, major := binaries(t, cfg.Bin)

	dir := t.TempDir()
	c := &Containerd{
		Namespace:  cfg.Namespace,
		Root:       filepath.Join(dir, "root"),
		State:      filepath.Join(dir, "state"),
		ConfigPath: filepath.Join(dir, "config.toml"),
		LogPath:    filepath.Join(dir, "containerd.log"),
		Major:      major,
		ctr:        ctr,
		timeout:    cfg.CommandTimeout,
		exited:     make(chan struct{}),
	}
	c.Address = filepath.Join(dir, "containerd.sock")
	if len(c.Address) > maxSocketPath {
		short, err := os.MkdirTemp("/tmp", "ctd")
		if err != nil {
			t.Fatalf("containerdtest: socket dir: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		c.Address = filepath.Join(short, "c.sock")
	}
	if err := os.WriteFile(c.ConfigPath, []byte(daemonConfig(major, c.Root, c.State, c.Address, cfg)), 0o644); err != nil {
		t.Fatalf("containerdtest: write config: %v", err)
	}
	logFile, err := os.Create(c.LogPath)
	if err != nil {
		t.Fatalf("containerdtest: log file: %v", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	if c.confine, err = loopback.New(dir); err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	c.cmd = c.confine.Command(context.Background(), daemon, "--config", c.ConfigPath)
	c.cmd.Env = cleanEnv()
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = sysProcAttr()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("containerdtest: start %s: %v", daemon, err)
	}
	// Stops when the daemon exits: on its own, or when the cleanup below
	// signals it.
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		// A daemon that died is worth a failure of its own, unless the
		// test has already failed (most likely because of that).
		if err := c.stop(); err != nil && !(errors.Is(err, errExited) && t.Failed()) {
			t.Errorf("containerdtest: %v", err)
		}
		if t.Failed() {
			t.Logf("containerd log %s (tail):\n%s", c.LogPath, c.LogTail(40))
		}
	})

	version, err := c.waitReady(cfg.StartTimeout)
	if err != nil {
		t.Fatalf("containerdtest: %v", err) // the cleanup logs the daemon's log
	}
	t.Logf("containerd %s, pid %d, socket %s", serverVersion(version), c.cmd.Process.Pid, c.Address)
	return c
}

// waitReady waits until the daemon's socket exists and `ctr version`
// answers, the daemon exits, or the timeout passes. The poll is bounded in
// time and in attempts, and a probe is cut short when the daemon exits.
func (c *Containerd) waitReady(timeout time.Duration) (string, error) {
	const (
		interval    = 20 * time.Millisecond
		maxAttempts = 2000
		probeLimit  = 5 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Stops when the daemon exits or waitReady returns.
	go func() {
		select {
		case <-c.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	var last error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if _, err := os.Stat(c.Address); err != nil {
			last = err
		} else {
			probe, stop := context.WithTimeout(ctx, probeLimit)
			out, err := c.run(probe, "version")
			stop()
			if err == nil {
				return out, nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			attempt = maxAttempts
		case <-time.After(interval):
		}
	}
	select {
	case <-c.exited:
		return "", fmt.Errorf("containerd exited before it was ready: %v", c.waitErr)
	default:
		return "", fmt.Errorf("containerd not ready on %s within %v: %v", c.Address, timeout, last)
	}
}

// stop sends SIGTERM to the daemon's PID and waits for it to exit, then
// SIGKILL if it has not within the grace period. It is called once, from
// the cleanup registered by StartWith.
func (c *Containerd) stop() error {
	select {
	case <-c.exited:
		return fmt.Errorf("containerd (pid %d) %w: %v", c.cmd.Process.Pid, errExited, c.waitErr)
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop containerd (pid %d): %w", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(15 * time.Second):
	}
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill containerd (pid %d): %w", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.exited:
		return fmt.Errorf("containerd (pid %d) ignored SIGTERM for 15s and was killed", c.cmd.Process.Pid)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("containerd (pid %d) did not exit after SIGKILL", c.cmd.Process.Pid)
	}
}

// Ctr runs ctr against this daemon, in its namespace, with the native
// snapshotter as the default, bounded by the Config's CommandTimeout and by
// t's context. It returns ctr's stdout; the error carries its stderr.
func (c *Containerd) Ctr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), c.timeout)
	defer cancel()
	return c.run(ctx, args...)
}

func (c *Containerd) run(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", c.Address, "--namespace", c.Namespace}, args...)
	cmd := c.confine.Command(ctx, c.ctr, full...)
	cmd.Env = append(cleanEnv(), "CONTAINERD_SNAPSHOTTER="+Snapshotter)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return stdout.String(), fmt.Errorf("ctr %s: %w\nstderr:\n%s", strings.Join(args, " "), err, tail(stderr.String(), 40))
	}
	return stdout.String(), nil
}

// serverVersion picks the daemon's version out of `ctr version` output,
// whose Server section follows the Client one.
func serverVersion(out string) string {
	_, server, ok := strings.Cut(out, "Server:")
	if !ok {
		return "(unknown version)"
	}
	for line := range strings.Lines(server) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(unknown version)"
}

// LogTail returns the last n lines of the daemon's log.
func (c *Containerd) LogTail(n int) string {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", c.LogPath, err)
	}
	return tail(string(b), n)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanEnv is the test's environment without what would redirect ctr or the
// daemon: containerd's own CONTAINERD_* variables and HTTP proxies (test
// registries are on loopback and must be reached directly).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(k)
		if strings.HasPrefix(upper, "CONTAINERD_") || strings.HasSuffix(upper, "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// CRIEndpoint is the daemon's CRI endpoint as crictl and the kubelet name
// it (Config.CRI turns the plugin on).
func (c *Containerd) CRIEndpoint() string { return "unix://" + c.Address }
