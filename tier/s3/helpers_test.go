package s3_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// files is the committed content uploads read, as the disk tier holds it.
type files struct {
	mu sync.Mutex // guards m
	m  map[oci.Digest][]byte
	e  map[oci.Digest]tier.Entry
}

func (f *files) add(data []byte, mediaType string) tier.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := tier.Entry{Digest: oci.FromBytes(data), Size: int64(len(data)), MediaType: mediaType}
	f.m[e.Digest], f.e[e.Digest] = data, e
	return e
}

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

func (f *files) read(dg oci.Digest) (io.ReadCloser, tier.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.m[dg]
	if !ok {
		return nil, tier.Entry{}, fmt.Errorf("%s: %w", dg.Short(), tier.ErrNotFound)
	}
	return readerAt{bytes.NewReader(data)}, f.e[dg], nil
}

// counter counts the requests a store sends, by method.
type counter struct {
	next http.RoundTripper
	mu   sync.Mutex // guards n
	n    map[string]int
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[req.Method]++
	c.mu.Unlock()
	return c.next.RoundTrip(req)
}

func (c *counter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// limit bounds a wait for what must happen: a bound for a failure to be
// reported, not a measure of speed.
const limit = time.Minute

// harness is a store over a versitygw, with what it reads from, what it
// sent, and how its uploads ended.
type harness struct {
	srv     *s3test.Server
	store   *s3.Store
	files   *files
	sent    *counter
	m       *metrics.Metrics
	results chan string // each upload's result, in the order they end
}

func newHarness(t *testing.T, srv *s3test.Server, mod func(*s3.Config)) *harness {
	t.Helper()
	h := &harness{srv: srv, files: &files{m: map[oci.Digest][]byte{}, e: map[oci.Digest]tier.Entry{}},
		sent: &counter{next: http.DefaultTransport.(*http.Transport).Clone(), n: map[string]int{}},
		m:    metrics.New(prometheus.NewRegistry()), results: make(chan string, 100)}
	cfg := s3.Config{Bucket: s3test.Bucket, Region: s3test.Region, PathStyle: true, Prefix: "cacheyd/",
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, Read: h.files.read, Transport: h.sent, Metrics: h.m,
		Logger:   slog.New(slog.DiscardHandler),
		Uploaded: func(e tier.Entry, result string) { h.results <- result }}
	if srv != nil {
		cfg.Endpoint = srv.Endpoint
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := s3.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	h.store = s
	return h
}

// upload keeps e and waits for its upload to end, returning how.
func (h *harness) upload(t *testing.T, e tier.Entry) string {
	t.Helper()
	h.store.Keep(e)
	select {
	case r := <-h.results:
		return r
	case <-time.After(limit):
		t.Fatalf("the upload did not end within %v", limit)
		return ""
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func counted(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func minioStat() minio.StatObjectOptions { return minio.StatObjectOptions{} }
