//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cacheydPackage is the main package of the binary under test.
const cacheydPackage = "github.com/cacheyd/cacheyd/cmd/cacheyd"

// buildCacheyd builds cmd/cacheyd into t's temporary directory, with the race
// detector when this test runs with it, and returns the binary's path. The
// go build cache makes repeated builds cheap.
func buildCacheyd(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("e2e: the go command is needed to build cacheyd: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cacheyd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, cacheydPackage)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2e: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// errExited is a cacheyd that exited before the test stopped it.
var errExited = errors.New("exited during the test")

// cacheyd is a running cacheyd process that belongs to one test.
type cacheyd struct {
	addr    string // host:port it listens on
	logPath string // its stdout and stderr
	log     *logWatcher
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // set before exited is closed

	stopOnce sync.Once // makes stop act once, from the test or the cleanup
}

// startCacheyd runs bin with args plus --listen 127.0.0.1:0 and
// --log-format json, waits (bounded) for its "listening" line, and stops it
// when t ends: SIGTERM, then SIGKILL if it has not exited in time. It fails t
// if cacheyd exits on its own, exits non-zero, or reports a data race; when
// t has failed it logs the tail of cacheyd's log.
func startCacheyd(t *testing.T, bin string, args ...string) *cacheyd {
	t.Helper()
	dir := t.TempDir()
	c := &cacheyd{
		logPath: filepath.Join(dir, "cacheyd.log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		t.Fatalf("e2e: cacheyd log: %v", err)
	}
	c.log = newLogWatcher(logFile)
	args = append([]string{"--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug"}, args...)
	c.cmd = exec.Command(bin, args...)
	// A race ends cacheyd at once, with the report in its log; the race
	// runtime's default 1s pause before exiting is not needed for that.
	c.cmd.Env = append(cleanEnv(), "GORACE=halt_on_error=1 atexit_sleep_ms=100")
	// One writer for both: exec copies them in one goroutine, which Wait
	// waits for, so the log is complete once the process has been waited.
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("e2e: start cacheyd: %v", err)
	}
	// Stops when cacheyd exits: on its own, or when the cleanup signals it.
	go func() {
		c.waitErr = c.cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			t.Logf("cacheyd log %s (tail):\n%s", c.logPath, c.log.tail(60))
		}
	})

	select {
	case c.addr = <-c.log.listening:
	case <-c.exited:
		t.Fatalf("e2e: cacheyd exited before listening: %v", c.waitErr)
	case <-time.After(30 * time.Second):
		t.Fatalf("e2e: cacheyd did not log %q within 30s", "listening")
	}
	t.Logf("cacheyd pid %d listening on %s: %s", c.cmd.Process.Pid, c.addr, strings.Join(args, " "))
	return c
}

// stop terminates cacheyd and fails t if that goes wrong. Only the first
// call does anything; startCacheyd's cleanup makes one.
func (c *cacheyd) stop(t *testing.T) {
	t.Helper()
	c.stopOnce.Do(func() {
		// A cacheyd that died is a failure of its own, unless the test
		// has already failed (most likely because of that).
		if err := c.terminate(); err != nil && !(errors.Is(err, errExited) && t.Failed()) {
			t.Errorf("e2e: %v", err)
		}
	})
}

// terminate sends SIGTERM to cacheyd's PID and waits (bounded) for it to exit,
// then SIGKILL. It reports a process that exited before being asked to, one
// that exited with an error, and data races in its log.
func (c *cacheyd) terminate() error {
	pid := c.cmd.Process.Pid
	select {
	case <-c.exited:
		return fmt.Errorf("cacheyd (pid %d) %w: %v", pid, errExited, c.waitErr)
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop cacheyd (pid %d): %w", pid, err)
	}
	var errs []error
	select {
	case <-c.exited:
		if c.waitErr != nil {
			errs = append(errs, fmt.Errorf("cacheyd (pid %d) did not exit cleanly on SIGTERM: %w", pid, c.waitErr))
		}
	case <-time.After(20 * time.Second):
		if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill cacheyd (pid %d): %w", pid, err)
		}
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("cacheyd (pid %d) did not exit after SIGKILL", pid)
		}
		errs = append(errs, fmt.Errorf("cacheyd (pid %d) ignored SIGTERM for 20s and was killed", pid))
	}
	if c.log.contains("WARNING: DATA RACE") {
		errs = append(errs, fmt.Errorf("cacheyd (pid %d) reported a data race; see its log", pid))
	}
	return errors.Join(errs...)
}

// url is cacheyd's base URL.
func (c *cacheyd) url() string { return "http://" + c.addr }

// metric sums the samples of the named metric whose labels include every
// label in want (label name to value), read from cacheyd's /metrics.
func (c *cacheyd) metric(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle connection left to hold up shutdown
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("e2e: cacheyd /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("e2e: cacheyd /metrics: %s %v", resp.Status, err)
	}
	sum, err := sumSamples(string(body), name, want)
	if err != nil {
		t.Fatalf("e2e: cacheyd /metrics: %v", err)
	}
	return sum
}

// sumSamples adds up the samples of metric name in a Prometheus text
// exposition whose labels include want.
func sumSamples(exposition, name string, want map[string]string) (float64, error) {
	var sum float64
	for line := range strings.Lines(exposition) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, name)
		if !ok || line == "" || line[0] == '#' {
			continue
		}
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				return 0, fmt.Errorf("bad sample %q", line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // another metric whose name starts with name
		}
		if !hasLabels(labels, want) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("bad sample %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("bad sample %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// hasLabels reports whether a label set as written in the exposition
// (`a="x",b="y"`) includes every pair in want. Values here hold no quotes
// or commas, so a plain split is enough.
func hasLabels(labels string, want map[string]string) bool {
	have := map[string]string{}
	for pair := range strings.SplitSeq(labels, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if ok {
			have[strings.TrimSpace(k)] = strings.Trim(v, `"`)
		}
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// logWatcher is cacheyd's stdout and stderr: it writes every line to the log
// file, keeps the lines for the test to inspect, and hands over the address
// from the first JSON line whose msg is "listening".
type logWatcher struct {
	file      io.Writer
	listening chan string // receives the listening address once

	mu      sync.Mutex    // guards partial, lines, sent and changed
	partial []byte        // an unfinished last line
	lines   []string      // every complete line so far
	sent    bool          // whether the address was handed over
	changed chan struct{} // closed and replaced whenever lines grows
}

func newLogWatcher(file io.Writer) *logWatcher {
	return &logWatcher{file: file, listening: make(chan string, 1), changed: make(chan struct{})}
}

func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.file.Write(p); err != nil {
		return 0, err
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.lines = append(w.lines, line)
		close(w.changed)
		w.changed = make(chan struct{})
		if !w.sent {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
				w.listening <- rec.Addr
				w.sent = true
			}
		}
	}
	return len(p), nil
}

// mark is a position in the log: the number of complete lines so far.
func (w *logWatcher) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// accessLine is one access log record ("msg":"request") of cacheyd.
type accessLine struct {
	Msg        string
	Method     string
	Registry   string
	Repository string
	Reference  string // a tag, or a digest shortened to 12 hex digits
	Kind       string
	Status     int
	Source     string
	Range      string // the Content-Range of a 206
}

// access returns the access lines logged after mark.
func (w *logWatcher) access(mark int) []accessLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []accessLine
	for _, l := range w.lines[mark:] {
		var a accessLine
		if json.Unmarshal([]byte(l), &a) == nil && a.Msg == "request" {
			out = append(out, a)
		}
	}
	return out
}

// waitAccess waits until ok accepts the access lines logged after mark, or
// timeout passes, and returns the last lines it saw. cacheyd logs a line
// when the response has been handed to the connection, which may be just
// after the client has read it.
func (w *logWatcher) waitAccess(mark int, timeout time.Duration, ok func([]accessLine) bool) ([]accessLine, bool) {
	var lines []accessLine
	done := w.waitFor(timeout, func() bool {
		lines = w.access(mark)
		return ok(lines)
	})
	return lines, done
}

// waitFor waits until ok, asked again whenever a line has been written,
// returns true, or timeout passes; it reports whether ok did.
func (w *logWatcher) waitFor(timeout time.Duration, ok func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		if ok() {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return ok()
		}
	}
}

// linesSince returns the complete lines written after mark.
func (w *logWatcher) linesSince(mark int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines[mark:])
}

func (w *logWatcher) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return bytes.Contains(w.partial, []byte(s))
}

// tail returns the last n lines written so far.
func (w *logWatcher) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := w.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "\n")
	if len(w.partial) > 0 {
		s += "\n" + string(w.partial)
	}
	return s
}

// cleanEnv is the test's environment without what would change cacheyd's
// configuration behind the test's back (CACHEYD_*) or send its upstream
// requests through a proxy.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(k)
		if strings.HasPrefix(upper, "CACHEYD_") || strings.HasSuffix(upper, "_PROXY") || upper == "GORACE" {
			continue
		}
		env = append(env, kv)
	}
	return env
}
