package bench

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// Fault kinds, in the order they are injected.
var faultKinds = []string{"truncated", "503", "429", "slow"}

// faultHook injects a fault into a share cfg.FaultRate of the requests for
// content (manifests, blobs, the CDN), evenly spread (with 0.1, every
// tenth), the kinds in turn, counting them. Evenly rather than at random:
// a run of n content requests meets exactly floor(n × rate) faults.
func faultHook(cfg SoakConfig, counts *[4]atomic.Int64) registrytest.Hook {
	var seen, nth atomic.Int64 // content requests, faults
	// 256 bytes: short enough to cut manifests and configs too; bodies
	// no longer than that pass whole.
	truncate := registrytest.Truncate(nil, 256)
	fail503 := registrytest.Fail(nil, http.StatusServiceUnavailable, 0)
	fail429 := registrytest.Fail(nil, http.StatusTooManyRequests, 0)
	return func(w http.ResponseWriter, req *http.Request) bool {
		rq := registrytest.Recorded(req)
		switch rq.Kind {
		case registrytest.KindManifest, registrytest.KindBlob, registrytest.KindCDN:
		default:
			return false
		}
		if cfg.FaultRate <= 0 {
			return false
		}
		n := seen.Add(1)
		if int64(float64(n)*cfg.FaultRate) == int64(float64(n-1)*cfg.FaultRate) {
			return false
		}
		k := int(nth.Add(1)-1) % len(faultKinds)
		counts[k].Add(1)
		switch faultKinds[k] {
		case "truncated":
			return truncate(w, req)
		case "503":
			return fail503(w, req)
		case "429":
			w.Header().Set("Retry-After", "0")
			return fail429(w, req)
		default: // slow
			t := time.NewTimer(cfg.SlowDelay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-req.Context().Done():
				return true
			}
			return false
		}
	}
}

// wipeHalf removes every other regular file under dir, as an operator
// clearing part of a cache directory would, and returns how many.
func wipeHalf(dir string) int {
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	n := 0
	for i := 0; i < len(files); i += 2 {
		if os.Remove(files[i]) == nil {
			n++
		}
	}
	return n
}
