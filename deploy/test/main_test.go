package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the cacheyd repository, two levels up from this module.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}()

// deployDir is a path under deploy/.
func deployDir(parts ...string) string {
	return filepath.Join(append([]string{repoRoot, "deploy"}, parts...)...)
}

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cacheyd-deploytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// cacheydBinary builds cacheyd from the parent module, once per run.
func cacheydBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildPath = filepath.Join(binDir, "cacheyd")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/cacheyd")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/cacheyd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// cliFlags is what "cacheyd --help" lists: the long flags and their
// environment variables.
type cliFlags struct {
	flags map[string]bool // "memory-bytes"
	envs  map[string]bool // "CACHEYD_MEMORY_BYTES"
}

var (
	helpOnce sync.Once
	help     cliFlags
	helpErr  error
)

var (
	flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z][a-z0-9-]*)`)
	envRE  = regexp.MustCompile(`\$(CACHEYD_[A-Z0-9_]+)`)
)

// serveFlags parses "cacheyd --help" of the built binary.
func serveFlags(t *testing.T) cliFlags {
	t.Helper()
	bin := cacheydBinary(t)
	helpOnce.Do(func() {
		out, err := exec.Command(bin, "--help").CombinedOutput()
		if err != nil {
			helpErr = fmt.Errorf("cacheyd --help: %v\n%s", err, out)
			return
		}
		help = cliFlags{flags: map[string]bool{}, envs: map[string]bool{}}
		for _, m := range flagRE.FindAllStringSubmatch(string(out), -1) {
			help.flags[m[1]] = true
		}
		for _, m := range envRE.FindAllStringSubmatch(string(out), -1) {
			help.envs[m[1]] = true
		}
		if !help.flags["memory-bytes"] || !help.envs["CACHEYD_DISK_BYTES"] {
			helpErr = fmt.Errorf("cacheyd --help lists no --memory-bytes or $CACHEYD_DISK_BYTES:\n%s", out)
		}
	})
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	return help
}

// checkCacheydAccepts runs the built cacheyd with args and env and the
// "version" command, which parses every flag and variable the way serve
// would and then exits: the pod's command line is one cacheyd accepts.
func checkCacheydAccepts(t *testing.T, where string, args []string, env map[string]string) {
	t.Helper()
	cli := serveFlags(t)
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !cli.flags[name] {
			t.Errorf("%s: argument %q is not a cacheyd flag", where, a)
		}
	}
	var keys []string
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cmdEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + binDir}
	for _, k := range keys {
		if strings.HasPrefix(k, "CACHEYD_") && !cli.envs[k] {
			t.Errorf("%s: environment variable %s is not one cacheyd reads", where, k)
		}
		cmdEnv = append(cmdEnv, k+"="+env[k])
	}
	cmd := exec.Command(cacheydBinary(t), append(append([]string(nil), args...), "version")...)
	cmd.Env = cmdEnv
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: cacheyd %s refused its command line: %v\n%s", where, strings.Join(args, " "), err, out.String())
	}
}
