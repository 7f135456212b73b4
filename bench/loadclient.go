package bench

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/internal/puller"
)

// clientResult is what one load client did.
type clientResult struct {
	requests, errors int64
	firstErr         error
	lat              [phases][hitKinds][]float64
}

// loadClient hits cacheyd over one kept-alive connection until halt closes
// or ctx ends: memory hits, and every diskEvery-th request a disk hit.
func loadClient(ctx context.Context, tg *loadTarget, i, diskEvery int, phase *atomic.Int32, halt <-chan struct{}) clientResult {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	node := tg.puller(&http.Client{Transport: tr})
	var r clientResult
	for n := i; ; n++ { // start at i so that the clients do not all ask for the disk blob at once
		select {
		case <-halt:
			return r
		case <-ctx.Done():
			return r
		default:
		}
		kind, obj := hitMemory, tg.manifest
		if n%diskEvery == 0 {
			kind, obj = hitDisk, tg.disk
		}
		p := phase.Load()
		start := time.Now()
		// Hashing 2 MiB on every disk hit would measure the clients' CPU:
		// every 16th is verified, every one's length checked.
		_, err := hit(ctx, node, tg.repo, obj, kind == hitMemory || n%16 == 0)
		d := time.Since(start).Seconds()
		if ctx.Err() != nil {
			return r
		}
		r.requests++
		if err != nil {
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		// A request that began before the fill and ended during it is
		// counted in the window it began in.
		r.lat[p][kind] = append(r.lat[p][kind], d)
	}
}

// hit asks cacheyd for o the way a node does, through p: a manifest
// whole with its digest checked, a blob to its end with its size checked
// and, with verify, its digest. It returns the bytes read.
func hit(ctx context.Context, p *puller.Puller, repo string, o object, verify bool) (int64, error) {
	if o.manifest {
		m, err := p.Manifest(ctx, repo, o.digest)
		if err != nil {
			return 0, err
		}
		return int64(len(m.Raw)), nil
	}
	desc, err := o.descriptor()
	if err != nil {
		return 0, err
	}
	if verify {
		return p.Blob(ctx, repo, desc)
	}
	return p.BlobUnverified(ctx, repo, desc)
}
