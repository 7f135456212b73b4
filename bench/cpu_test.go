package bench

import (
	"os"
	"testing"
	"time"
)

// TestReadCPUGrowsWithWork: this process's CPU time, as read from /proc,
// grows by about what a busy loop burns.
func TestReadCPUGrowsWithWork(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before := readCPU(os.Getpid())
	// Bounded: a third of a second of one core.
	spin := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(spin) {
		x++
	}
	after := readCPU(os.Getpid())
	if got := after - before; got < 0.1 || got > 10 {
		t.Errorf("CPU time grew by %.2fs over a 0.3s busy loop (%d turns)", got, x)
	}
	if readCPU(-1) != 0 {
		t.Error("a process that does not exist has CPU time")
	}
}
