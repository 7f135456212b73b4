package bench

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// fakeHub is the fake Docker Hub: a real registry in-process that demands
// tokens, redirects blob downloads to a second host (its CDN), counts
// pulls and refuses them past the limit, and adds latency and a bandwidth
// cap to every answer. It counts what it sends, per burst.
type fakeHub struct {
	reg *registrytest.Registry

	bytes atomic.Int64 // 2xx body bytes of manifests and blobs since reset

	mu    sync.Mutex               // guards first
	first map[oci.Digest]time.Time // when each digest's first body byte was sent, since reset
}

func startHub(c Config) (*fakeHub, error) {
	return startFake(c, registrytest.Options{
		Token: true, Redirect: true, PullLimit: c.PullLimit, Addr: c.UpstreamAddr, CDNAddr: c.UpstreamCDNAddr,
	})
}

// startAlternate starts the alternate of Config.Alternate: a second
// registry on a free loopback port, as mirror.gcr.io stands beside Docker
// Hub. It demands tokens too and has no pull limit; it serves blobs itself,
// since cacheyd trusts an alternate's own address and no other. Latency and
// bandwidth are the upstream's, so that only where the bytes come from
// differs.
func startAlternate(c Config) (*fakeHub, error) {
	return startFake(c, registrytest.Options{Token: true})
}

// startFake starts a registry with opts whose answers carry c's latency and
// bandwidth cap, counting what it sends.
func startFake(c Config, opts registrytest.Options) (*fakeHub, error) {
	reg, err := registrytest.NewServer(opts)
	if err != nil {
		return nil, err
	}
	u := &fakeHub{reg: reg, first: map[oci.Digest]time.Time{}}
	delay := registrytest.Delay(nil, c.Latency)
	throttle := registrytest.Throttle(nil, c.Bandwidth)
	reg.SetHook(func(w http.ResponseWriter, req *http.Request) bool {
		if c.Latency > 0 && delay(w, req) {
			return true // the client went away while waiting
		}
		cw := u.counting(w, req)
		if !throttle(cw, req) {
			registrytest.Pass(cw, req)
		}
		return true
	})
	return u, nil
}

func (u *fakeHub) close() { u.reg.Close() }

// reset starts a burst: counts, pull accounting and the rate limit window
// start again.
func (u *fakeHub) reset() {
	u.reg.Reset()
	u.bytes.Store(0)
	u.mu.Lock()
	clear(u.first)
	u.mu.Unlock()
}

// settle waits until upstream has sent no content byte for quiet, or for
// at most limit, or until ctx ends, and returns the bytes it sent since
// reset: what a cacheyd still fetching in the background adds after its
// clients are done.
func (u *fakeHub) settle(ctx context.Context, quiet, limit time.Duration) int64 {
	deadline := time.Now().Add(limit)
	last, since := u.bytes.Load(), time.Now()
	t := time.NewTicker(quiet / 10)
	defer t.Stop()
	for time.Since(since) < quiet && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return u.bytes.Load()
		case <-t.C:
		}
		if now := u.bytes.Load(); now != last {
			last, since = now, time.Now()
		}
	}
	return last
}

// firstByte returns when the first body byte of d was sent since reset.
func (u *fakeHub) firstByte(d oci.Digest) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.first[d]
	return t, ok
}

// counting wraps w so that the body bytes of a GET of content (a manifest,
// a blob, or a blob on the CDN) are counted.
func (u *fakeHub) counting(w http.ResponseWriter, req *http.Request) http.ResponseWriter {
	rq := registrytest.Recorded(req)
	if req.Method != http.MethodGet {
		return w
	}
	var d oci.Digest
	switch rq.Kind {
	case registrytest.KindManifest, registrytest.KindBlob, registrytest.KindCDN:
		d, _ = oci.ParseDigest(rq.Ref) // empty for a tag
	default:
		return w
	}
	return &countingWriter{ResponseWriter: w, u: u, digest: d}
}

// countingWriter counts the body bytes of a 2xx answer and notes when the
// first one was handed to the connection.
type countingWriter struct {
	http.ResponseWriter
	u      *fakeHub
	digest oci.Digest // empty when the request named a tag
	status int        // 0 until the header is written
	wrote  bool       // a body byte went out
}

func (w *countingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write counts p before it goes out and takes back what did not: a client
// can have a byte only once it is counted, so a burst whose nodes are done
// has all its bytes counted, and none arrive late in the next one's.
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if len(p) == 0 || w.status/100 != 2 {
		return w.ResponseWriter.Write(p)
	}
	if !w.wrote && w.digest != "" {
		w.u.mu.Lock()
		if _, seen := w.u.first[w.digest]; !seen {
			w.u.first[w.digest] = time.Now()
		}
		w.u.mu.Unlock()
	}
	w.wrote = true
	w.u.bytes.Add(int64(len(p)))
	n, err := w.ResponseWriter.Write(p)
	if n < len(p) {
		w.u.bytes.Add(int64(n - len(p)))
	}
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *countingWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }
