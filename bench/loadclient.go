package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/oci"
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
	c := &http.Client{Transport: tr}
	var r clientResult
	for n := i; ; n++ { // start at i so that the clients do not all ask for the disk blob at once
		select {
		case <-halt:
			return r
		case <-ctx.Done():
			return r
		default:
		}
		kind, url, obj := hitMemory, tg.manifestURL, tg.manifest
		if n%diskEvery == 0 {
			kind, url, obj = hitDisk, tg.diskURL, tg.disk
		}
		p := phase.Load()
		start := time.Now()
		// Hashing 2 MiB on every disk hit would measure the clients' CPU:
		// every 16th is verified, every one's length checked.
		_, err := fetchVerify(ctx, c, url, obj, kind == hitMemory || n%16 == 0)
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

// acceptManifests is the Accept header of a manifest hit: containerd's.
var acceptManifests = strings.Join(oci.ManifestMediaTypes, ", ")

// fetchVerify GETs url and checks the answer is obj: status 200, its
// length, and with verify its digest. It returns the bytes read.
func fetchVerify(ctx context.Context, c *http.Client, url string, obj object, verify bool) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if obj.manifest {
		req.Header.Set("Accept", acceptManifests)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return 0, fmt.Errorf("GET %s answered %d", obj.digest.Short(), resp.StatusCode)
	}
	var w io.Writer = io.Discard
	h := sha256.New()
	if verify {
		w = h
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: after %d bytes: %w", obj.digest.Short(), n, err)
	}
	if n != obj.size {
		return n, fmt.Errorf("GET %s: %d bytes, want %d", obj.digest.Short(), n, obj.size)
	}
	if verify && oci.Digest("sha256:"+hex.EncodeToString(h.Sum(nil))) != obj.digest {
		return n, fmt.Errorf("GET %s: digest mismatch", obj.digest.Short())
	}
	return n, nil
}
