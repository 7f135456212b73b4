//go:build unix

package bench

import (
	"os"
	"syscall"
	"testing"
)

// rusageCPU is the CPU time this process has used so far, user and
// system, of all its threads, in seconds, as getrusage reports it.
func rusageCPU(t *testing.T) float64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// TestReadCPUGrowsWithWork: this process's CPU time, as read from /proc,
// grows by what the kernel's own account (getrusage) says a busy loop
// burnt. The loop runs until that account has grown by a set amount, not
// for a set wall-clock time, so other work on the machine makes it take
// longer, never measure less.
func TestReadCPUGrowsWithWork(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	const (
		burn = 0.2 // seconds of CPU the loop burns
		// Bounds the loop if getrusage stood still: each turn is about
		// 0.1 ms of one core, so a working account ends it far sooner.
		maxTurns = 1_000_000
		// /proc counts in USER_HZ ticks of 10 ms, truncated at each end;
		// beyond that, readCPU's own readings come just before and after
		// getrusage's, around microseconds of other work.
		slackBelow, slackAbove = 0.025, 0.05
	)
	before := readCPU(os.Getpid())
	ruBefore := rusageCPU(t)
	ru, x, turns := ruBefore, uint64(1), 0
	for ; turns < maxTurns && ru-ruBefore < burn; turns++ {
		for range 100_000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		ru = rusageCPU(t)
	}
	after := readCPU(os.Getpid())
	spent := ru - ruBefore
	if spent < burn {
		t.Fatalf("getrusage grew by %.3fs over %d turns of a busy loop (%d), want %.1fs", spent, turns, x, burn)
	}
	if got := after - before; got < spent-slackBelow || got > spent+slackAbove {
		t.Errorf("readCPU grew by %.3fs while getrusage grew by %.3fs (%d turns), want the same within %.3fs below, %.3fs above",
			got, spent, turns, slackBelow, slackAbove)
	}
	t.Logf("readCPU %.3f getrusage %.3f turns %d", after-before, spent, turns)
	if readCPU(-1) != 0 {
		t.Error("a process that does not exist has CPU time")
	}
}
