package bench

import (
	"errors"
	"time"
)

// LoadConfig configures the load scenario ("cacheyd-bench --scenarios
// load"): many client connections hitting cached content while one large
// blob is filled from a slow upstream. The zero value of each field is
// documented; DefaultLoadConfig and QuickLoadConfig give the numbers.
type LoadConfig struct {
	// Conns is how many clients hit cacheyd at once, each with its own
	// TCP connection (kept alive). Zero means 1,000.
	Conns int
	// Before is how long the clients hit cacheyd before the fill starts;
	// After, how long they go on once it has finished. Zero means 5s and
	// 2s.
	Before, After time.Duration
	// SmallLayer is the size of the blob served from disk: larger than
	// the memory tier's largest object (1 MiB by default). Zero means
	// 2 MiB.
	SmallLayer int64
	// FillSize is the size of the blob filled in the middle of the run,
	// and FillBandwidth the upstream's cap on its body, in bytes per
	// second. Zero means 64 MiB at 8 MB/s (eight seconds).
	FillSize, FillBandwidth int64
	// DiskEvery makes every DiskEvery-th request of a client a disk hit,
	// the others memory hits. Zero means 4.
	DiskEvery int
	// Settle is how long the run waits, after the clients have closed
	// their connections, for the goroutine count to fall back to within
	// 10% of cacheyd's idle count (fasthttp keeps a served connection's
	// worker 10s to 20s after its last use). Zero means 25s; negative means no wait.
	Settle time.Duration
	// Timeout bounds the whole run. Zero means 5 minutes.
	Timeout time.Duration
	// Start starts the in-process cacheyd. Nil means the harness's own
	// wiring with metrics.
	Start Starter
	// Dir holds its cache. Empty means a temporary directory, removed at
	// the end.
	Dir string
	// JSON makes RunLoad write the report as JSON rather than as text.
	JSON bool
}

// DefaultLoadConfig is "cacheyd-bench --scenarios load".
func DefaultLoadConfig() LoadConfig {
	return LoadConfig{
		Conns: 1000, Before: 5 * time.Second, After: 2 * time.Second, SmallLayer: 2 << 20,
		FillSize: 64 << 20, FillBandwidth: 8_000_000, DiskEvery: 4, Settle: 25 * time.Second, Timeout: 5 * time.Minute,
	}
}

// QuickLoadConfig is a load run of seconds: 100 connections, a 4 MiB fill
// at 4 MB/s.
func QuickLoadConfig() LoadConfig {
	c := DefaultLoadConfig()
	c.Conns, c.Before, c.After = 100, time.Second, 500*time.Millisecond
	c.FillSize, c.FillBandwidth, c.Settle = 4<<20, 4_000_000, -1
	return c
}

func (c LoadConfig) withDefaults() (LoadConfig, error) {
	d := DefaultLoadConfig()
	if c.Conns == 0 {
		c.Conns = d.Conns
	}
	if c.Before == 0 {
		c.Before = d.Before
	}
	if c.After == 0 {
		c.After = d.After
	}
	if c.SmallLayer == 0 {
		c.SmallLayer = d.SmallLayer
	}
	if c.FillSize == 0 {
		c.FillSize = d.FillSize
	}
	if c.FillBandwidth == 0 {
		c.FillBandwidth = d.FillBandwidth
	}
	if c.DiskEvery == 0 {
		c.DiskEvery = d.DiskEvery
	}
	if c.Settle == 0 {
		c.Settle = d.Settle
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Start == nil {
		c.Start = startCacheyd
	}
	if c.Conns < 1 || c.Conns > 10000 || c.Before < 0 || c.After < 0 || c.SmallLayer < 1 || c.FillSize < 1 ||
		c.FillBandwidth < 0 || c.DiskEvery < 1 || c.Timeout < 0 {
		return c, errors.New("bench: load: want 1 to 10000 connections and positive sizes and durations")
	}
	return c, nil
}
