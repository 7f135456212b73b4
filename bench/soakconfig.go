package bench

import (
	"errors"
	"fmt"
	"time"
)

// SoakConfig configures the soak scenario ("cacheyd-bench --scenarios
// soak"): nodes pull the image set through cacheyd again and again for a
// bounded time while the upstream injects faults, and part of the cache
// directory is wiped once in the middle. The zero value of each field is
// documented; DefaultSoakConfig and QuickSoakConfig give the numbers.
type SoakConfig struct {
	// Duration is how long nodes start new pulls. Zero means 30s.
	Duration time.Duration
	// Nodes pull at once, each pull with an empty content store. Zero
	// means 4.
	Nodes int
	// Images is the set pulled. Nil means QuickImages.
	Images []Image
	// FaultRate is the share of upstream requests answered with a fault
	// (a truncated body, 503, 429 with Retry-After: 0, or a slow answer,
	// in turn). Zero means 0.1; negative means none.
	FaultRate float64
	// SlowDelay is how long a slow answer waits. Zero means 300ms.
	SlowDelay time.Duration
	// Every is how often a new generation of the image set (new content
	// under new tags) is seeded upstream and pulled from then on, so that
	// cacheyd keeps filling, and meeting faults, through the whole run.
	// Zero means 5s; negative means the set is seeded once.
	Every time.Duration
	// Retries is how often a node retries a failed image pull, as
	// containerd's client does when the kubelet asks again. Zero means 3.
	Retries int
	// Resume is how often a node resumes a broken download. Zero means
	// DefaultResume.
	Resume int
	// Start starts the in-process cacheyd; it must serve /metrics. Nil
	// means the harness's own wiring with metrics.
	Start Starter
	// Dir holds its cache. Empty means a temporary directory, removed at
	// the end.
	Dir string
	// JSON makes RunSoak write the report as JSON rather than as text.
	JSON bool
}

// DefaultSoakConfig is "cacheyd-bench --scenarios soak".
func DefaultSoakConfig() SoakConfig {
	return SoakConfig{
		Duration: 30 * time.Second, Nodes: 4, Images: QuickImages(), FaultRate: 0.1,
		SlowDelay: 300 * time.Millisecond, Every: 5 * time.Second, Retries: 3, Resume: DefaultResume,
	}
}

// QuickSoakConfig is a soak of three seconds.
func QuickSoakConfig() SoakConfig {
	c := DefaultSoakConfig()
	c.Duration, c.SlowDelay, c.Every = 3*time.Second, 50*time.Millisecond, time.Second
	return c
}

func (c SoakConfig) withDefaults() (SoakConfig, error) {
	d := DefaultSoakConfig()
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Nodes == 0 {
		c.Nodes = d.Nodes
	}
	if c.Images == nil {
		c.Images = d.Images
	}
	if c.FaultRate == 0 {
		c.FaultRate = d.FaultRate
	}
	if c.SlowDelay == 0 {
		c.SlowDelay = d.SlowDelay
	}
	if c.Every == 0 {
		c.Every = d.Every
	}
	if c.Retries == 0 {
		c.Retries = d.Retries
	}
	if c.Resume == 0 {
		c.Resume = d.Resume
	}
	if c.Start == nil {
		c.Start = startCacheyd
	}
	if c.Duration < 0 || c.Nodes < 1 || c.Nodes > 256 || c.FaultRate > 1 || c.SlowDelay < 0 || c.Retries < 0 || c.Resume < 0 {
		return c, errors.New("bench: soak: want a positive duration, 1 to 256 nodes, a fault rate up to 1")
	}
	if err := validateImages(c.Images); err != nil {
		return c, fmt.Errorf("bench: soak: %w", err)
	}
	return c, nil
}
