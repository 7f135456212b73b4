//go:build !linux

package containerdtest

import "syscall"

// sysProcAttr has nothing to add where the kernel cannot tie the daemon's
// life to the test binary's.
func sysProcAttr() *syscall.SysProcAttr { return nil }
