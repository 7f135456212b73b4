package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// rssInterval is how often sampleRSS looks at the process.
const rssInterval = 20 * time.Millisecond

// sampleRSS watches the resident memory of process pid until the returned
// function is called, which returns the highest seen in bytes (zero if the
// process could not be read, for example on a system without /proc).
func sampleRSS(pid int) (stop func() int64) {
	done := make(chan struct{})
	peak := make(chan int64, 1)
	// Stops when stop closes done.
	go func() {
		var high int64
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			high = max(high, readRSS(pid))
			select {
			case <-t.C:
			case <-done:
				peak <- max(high, readRSS(pid))
				return
			}
		}
	}()
	return func() int64 {
		close(done)
		return <-peak
	}
}

// readRSS returns VmRSS of process pid in bytes, or 0.
func readRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
