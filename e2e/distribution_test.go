//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// registryBinEnv names the CNCF distribution registry binary the tests run
// as a second, real registry (.ci/run installs it and sets it):
//
//	go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
//
// Unset, "registry" is looked up on PATH.
const registryBinEnv = "CACHEYD_REGISTRY_BIN"

// registryBin is the distribution registry to run. When there is none, t
// is skipped with how to install it, or fails under CI=true: CI must never
// pass without running it.
func registryBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(registryBinEnv)
	if bin == "" {
		bin = "registry"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		msg := fmt.Sprintf("e2e: the distribution registry is not installed (%v); install it with "+
			"go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2 and name it in %s", err, registryBinEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// distributionConfig is the registry's configuration: filesystem storage
// under root, plain HTTP on a free loopback port, no auth, no background
// purge of uploads, and an access log (its stdout) of every request.
const distributionConfig = `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
`

// distribution is a running CNCF distribution registry that belongs to one
// test.
type distribution struct {
	addr    string      // host:port it listens on
	access  *logWatcher // its stdout: one Combined Log Format line per request
	log     *logWatcher // its stderr: its own log
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // set before exited is closed
}

// listeningRE finds the address in the registry's "listening on" line.
var listeningRE = regexp.MustCompile(`msg="listening on (127\.0\.0\.1:\d+)"`)

// startDistribution runs the distribution registry for t with storage in
// t's temporary directory, waits (bounded) until /v2/ answers 200, and
// stops it by its PID when t ends: SIGTERM, then SIGKILL if it has not
// exited in time. When t has failed it logs the tail of both logs.
func startDistribution(t *testing.T) *distribution {
	t.Helper()
	bin := registryBin(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	body := fmt.Sprintf(distributionConfig, strconv.Quote(filepath.Join(dir, "data")))
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &distribution{exited: make(chan struct{})}
	var files []*os.File
	for _, name := range []string{"access.log", "registry.log"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	d.access, d.log = newLogWatcher(files[0]), newLogWatcher(files[1])
	d.cmd = exec.Command(bin, "serve", config)
	d.cmd.Env = distributionEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.access, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("e2e: start %s: %v", bin, err)
	}
	// Stops when the registry exits: on its own, or when the cleanup
	// signals it.
	go func() {
		d.waitErr = d.cmd.Wait()
		for _, f := range files {
			f.Close()
		}
		close(d.exited)
	}()
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("e2e: %v", err)
		}
		if t.Failed() {
			t.Logf("distribution registry log (tail):\n%s\naccess log (tail):\n%s", d.log.tail(30), d.access.tail(30))
		}
	})

	// A registry that cannot start says why on stderr and exits.
	gone := func() bool {
		select {
		case <-d.exited:
			return true
		default:
			return false
		}
	}
	if !d.log.waitFor(30*time.Second, func() bool { return d.listening() != "" || gone() }) || d.listening() == "" {
		t.Fatalf("e2e: the distribution registry did not log where it listens (within 30s, or before it exited)")
	}
	d.addr = d.listening()
	// It logs the address once it holds the listener, so /v2/ answers as
	// soon as it serves: no retries needed, only a bound.
	if status := d.do(t, http.MethodGet, d.url()+"/v2/", "", nil).StatusCode; status != http.StatusOK {
		t.Fatalf("e2e: the distribution registry answers /v2/ with %d", status)
	}
	t.Logf("distribution registry pid %d listening on %s", d.cmd.Process.Pid, d.addr)
	return d
}

// listening is the address the registry logged, or "".
func (d *distribution) listening() string {
	for _, l := range d.log.linesSince(0) {
		if m := listeningRE.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// distributionEnv is the test's environment without what would configure
// the registry behind the test's back (REGISTRY_*, OTEL_*) or proxy it, and
// with no trace exporter (its default sends traces to a collector).
func distributionEnv() []string {
	var env []string
	for _, kv := range cleanEnv() {
		k, _, _ := strings.Cut(kv, "=")
		if u := strings.ToUpper(k); strings.HasPrefix(u, "REGISTRY_") || strings.HasPrefix(u, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OTEL_TRACES_EXPORTER=none")
}

// stop sends SIGTERM to the registry's PID and waits (bounded) for it to
// exit, then SIGKILL.
func (d *distribution) stop() error {
	pid := d.cmd.Process.Pid
	select {
	case <-d.exited:
		return fmt.Errorf("distribution registry (pid %d) %w: %v", pid, errExited, d.waitErr)
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop distribution registry (pid %d): %w", pid, err)
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(20 * time.Second):
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill distribution registry (pid %d): %w", pid, err)
	}
	<-d.exited
	return fmt.Errorf("distribution registry (pid %d) ignored SIGTERM for 20s and was killed", pid)
}

// url is the registry's base URL.
func (d *distribution) url() string { return "http://" + d.addr }
