package containerdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/cacheyd/cacheyd/internal/loopback"
)

// V2Env names the directory holding containerd 2's containerd and ctr,
// built from source (.ci/run builds them and sets it):
//
//	GOBIN=DIR go install -tags no_btrfs github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 \
//	    github.com/containerd/containerd/v2/cmd/ctr@v2.4.2
const V2Env = "CACHEYD_CONTAINERD2"

// V2Bin is the directory V2Env names, for Config.Bin. When it is not set,
// t is skipped with how to build containerd 2, or fails under CI=true.
func V2Bin(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(V2Env)
	if dir == "" {
		msg := "containerdtest: " + V2Env + " does not name a directory with containerd 2's containerd and ctr; build them with " +
			"GOBIN=DIR go install -tags no_btrfs github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 github.com/containerd/containerd/v2/cmd/ctr@v2.4.2"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// binaries finds containerd and ctr, in bin or on PATH, and the daemon's
// major version. When either is missing, or the test is not running as
// root (containerd needs it to own its root and to unpack image layers),
// the test is skipped with the reason, except under CI=true, where that is
// a failure: CI must never pass without running it.
func binaries(t testing.TB, bin string) (containerd, ctr string, major int) {
	t.Helper()
	hint := "install it (Debian: apt-get install containerd) to run this test"
	daemon, client := "containerd", "ctr"
	if bin != "" {
		daemon, client = filepath.Join(bin, daemon), filepath.Join(bin, client)
		hint = "build it as " + V2Env + " says"
	}
	containerd = loopback.Need(t, daemon, hint)
	ctr = loopback.Need(t, client, hint)
	out, err := exec.Command(containerd, "--version").Output()
	if err != nil {
		t.Fatalf("containerdtest: %s --version: %v", containerd, err)
	}
	if major = majorVersion(string(out)); major == 0 {
		t.Fatalf("containerdtest: no version in %q", out)
	}
	return containerd, ctr, major
}

// versionRE finds the version in `containerd --version` output
// ("containerd github.com/containerd/containerd/v2 2.4.2+unknown",
// "containerd github.com/containerd/containerd 1.6.20~ds1 ...").
var versionRE = regexp.MustCompile(` v?(\d+)\.\d+\.\d+`)

// majorVersion is the major version in `containerd --version` output, or 0.
func majorVersion(out string) int {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
