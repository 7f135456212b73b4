//go:build linux && race

package e2e

// raceEnabled is whether this test binary runs under the race detector; the
// cacheyd binary under test is then built with it too.
const raceEnabled = true
