package containerdtest

import (
	"os"
	"os/exec"
	"testing"
)

// binaries finds containerd and ctr on PATH. When either is missing, or the
// test is not running as root (containerd needs it to own its root and to
// unpack image layers), the test is skipped with the reason, except under
// CI=true, where that is a failure: CI must never pass without running it.
func binaries(t testing.TB) (containerd, ctr string) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		fail("containerdtest: containerd is not installed (%v); install it (Debian: apt-get install containerd) to run this test", err)
	}
	ctr, err = exec.LookPath("ctr")
	if err != nil {
		fail("containerdtest: ctr is not installed (%v); it ships with containerd (Debian: apt-get install containerd)", err)
	}
	if os.Geteuid() != 0 {
		fail("containerdtest: containerd must run as root to own its root directory and unpack layers; run this test as root")
	}
	return containerd, ctr
}
