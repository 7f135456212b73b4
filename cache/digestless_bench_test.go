package cache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/oci"
)

// digestlessOrigin is a registry that names no digest: its HEAD of a tag
// carries no Docker-Content-Digest, so only a GET tells what the tag is.
// Every body reads the one slice it holds, so the origin itself holds
// nothing per request: what a benchmark measures is the cache's memory.
type digestlessOrigin struct {
	mu   sync.Mutex        // guards refs and gets
	refs map[string][]byte // a manifest by tag and by digest
	gets int               // GETs answered
}

func (o *digestlessOrigin) add(tag string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refs == nil {
		o.refs = map[string][]byte{}
	}
	o.refs[tag] = data
	o.refs[string(oci.FromBytes(data))] = data
}

func (o *digestlessOrigin) getCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gets
}

func (o *digestlessOrigin) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	data, ok := o.refs[req.Reference.String()]
	if req.Method == http.MethodGet {
		o.gets++
	}
	o.mu.Unlock()
	if !ok {
		return nil, &oci.Error{Status: http.StatusNotFound, Code: oci.CodeManifestUnknown, Message: "unknown"}
	}
	resp := &oci.Response{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(data))}
	if req.Method == http.MethodGet {
		resp.Body = io.NopCloser(bytes.NewReader(data))
	}
	return resp, nil
}

// heapObjects reads the bytes of heap objects, live and not yet swept,
// into s, allocating nothing, and returns them.
func heapObjects(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func heapSample() []metrics.Sample {
	return []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
}

// heapPeak samples heapObjects until stop is called, which returns the
// largest sample. Sampling allocates nothing, so it adds nothing to what
// it measures.
func heapPeak() (stop func() uint64) {
	done, peak := make(chan struct{}), make(chan uint64)
	s := heapSample()
	// Stops when stop closes done.
	go func() {
		var top uint64
		for {
			top = max(top, heapObjects(s))
			select {
			case <-done:
				peak <- top
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	return func() uint64 {
		close(done)
		return <-peak
	}
}

// BenchmarkDigestlessTags is the burst of a security review: 200 clients
// at once GET a tag whose registry names no digest on HEAD, and the
// manifest is 4 MiB, the most a registry may send. It measures memory, not
// time: peak-heap-B is the most heap the burst took beyond what was in use
// before it (the largest of all rounds), and upstream-GETs/op the GETs the
// registry saw per burst.
//
//	go test -run '^$' -bench DigestlessTags -benchtime 5x ./cache
func BenchmarkDigestlessTags(b *testing.B) {
	const (
		clients = 200
		size    = oci.MaxManifestSize
	)
	o := &digestlessOrigin{}
	// As cacheyd starts with no flags: a memory tier of 256 MiB for objects
	// up to 1 MiB, and a tag's answer reused for a minute.
	cfg := cache.Config{
		Dir: b.TempDir(), MemoryBytes: 256 << 20, MemoryMaxObject: 1 << 20, TagTTL: time.Minute,
		Logger: slog.New(slog.DiscardHandler),
	}
	c, err := cache.New(cfg, o, cache.OpenTestTiers(b, &cfg))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ctx := b.Context()
	data := randomContent(b, size)
	var (
		top    uint64
		rounds int
	)
	for b.Loop() {
		// A new tag and manifest each round, so that every round is cold.
		rounds++
		tag := "v" + strconv.Itoa(rounds)
		content := bytes.Clone(data)
		binary.LittleEndian.PutUint64(content, uint64(rounds))
		o.add(tag, content)
		req := &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Registry: "docker.io",
			Repository: "library/bench", Reference: oci.Reference{Tag: tag}}
		runtime.GC()
		before := heapObjects(heapSample())
		stop := heapPeak()

		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for range clients {
			wg.Go(func() {
				if _, n, err := getAll(ctx, c, req); err != nil || n != size {
					errs <- err
				}
			})
		}
		wg.Wait()
		if peak := stop(); peak > before {
			top = max(top, peak-before)
		}
		close(errs)
		for err := range errs {
			b.Fatalf("client: %v", err)
		}
	}
	b.ReportMetric(float64(top), "peak-heap-B")
	b.ReportMetric(float64(o.getCount())/float64(rounds), "upstream-GETs/op")
}
