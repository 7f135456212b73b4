package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/cache"
	"github.com/cacheyd/cacheyd/oci"
)

// The read path's hot spots, measured through the exported API only:
//
//	go test -run XXX -bench . -benchmem ./cache

// memOrigin serves one object from memory, like an upstream on loopback
// with no latency: what is measured is the cache, not the origin.
type memOrigin struct {
	mu        sync.Mutex // guards data and mediaType
	data      []byte
	mediaType string
}

func (o *memOrigin) set(data []byte, mediaType string) oci.Digest {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.data, o.mediaType = data, mediaType
	return oci.FromBytes(data)
}

func (o *memOrigin) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	o.mu.Lock()
	data, mt := o.data, o.mediaType
	o.mu.Unlock()
	resp := &oci.Response{Digest: oci.FromBytes(data), MediaType: mt, Size: int64(len(data))}
	if req.Method == http.MethodGet {
		resp.Body = io.NopCloser(bytes.NewReader(data))
	}
	return resp, nil
}

func benchCache(b *testing.B, o cache.Origin, memoryBytes int64) *cache.Cache {
	b.Helper()
	cfg := cache.Config{
		Dir: b.TempDir(), MemoryBytes: memoryBytes, MemoryMaxObject: 1 << 20,
		Logger: slog.New(slog.DiscardHandler),
	}
	c, err := cache.New(cfg, o, cache.OpenTestTiers(b, &cfg))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func benchReq(kind oci.Kind, dg oci.Digest) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: kind, Registry: "docker.io", Repository: "library/bench", Reference: oci.Reference{Digest: dg}}
}

func randomContent(b *testing.B, n int) []byte {
	b.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	return data
}

// getAll asks c for req and reads the whole answer.
func getAll(ctx context.Context, c *cache.Cache, req *oci.Request) (*cache.Object, int64, error) {
	obj, err := c.Get(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	if data := obj.Bytes(); data != nil {
		obj.Close()
		return obj, int64(len(data)), nil
	}
	body, err := obj.Body(0, -1)
	if err != nil {
		obj.Close()
		return nil, 0, err
	}
	n, err := io.Copy(io.Discard, body)
	body.Close()
	return obj, n, err
}

// waitSource asks for req until the answer comes from src: the memory tier
// admits new objects asynchronously. It gives up after a bounded number of
// tries.
func waitSource(b *testing.B, c *cache.Cache, req *oci.Request, src cache.Source) {
	b.Helper()
	for range 100_000 {
		obj, _, err := getAll(b.Context(), c, req)
		if err != nil {
			b.Fatal(err)
		}
		if obj.Source == src {
			return
		}
		runtime.Gosched()
	}
	b.Fatalf("%s never answered from %s", req.Reference.Digest.Short(), src)
}

// BenchmarkGetMemoryHit is a warm manifest: Get answers from the memory
// tier with the shared slice, no copy and no file.
func BenchmarkGetMemoryHit(b *testing.B) {
	o := &memOrigin{}
	c := benchCache(b, o, 64<<20)
	dg := o.set(randomContent(b, 4<<10), "application/vnd.oci.image.manifest.v1+json")
	req := benchReq(oci.KindManifest, dg)
	waitSource(b, c, req, cache.SourceMemory)
	ctx := b.Context()
	b.ReportAllocs()
	b.SetBytes(4 << 10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			obj, err := c.Get(ctx, req)
			if err != nil || obj.Source != cache.SourceMemory || len(obj.Bytes()) != 4<<10 {
				b.Errorf("Get: %v, source %v", err, obj)
				return
			}
			obj.Close()
		}
	})
}

// BenchmarkGetDiskHit is a warm layer not kept in memory: Get finds it in
// the disk tier's index and opens the file, which the server then sends
// with sendfile ("open"); "read" also reads all 16 MiB through the file.
func BenchmarkGetDiskHit(b *testing.B) {
	const size = 16 << 20
	o := &memOrigin{}
	c := benchCache(b, o, 0)
	dg := o.set(randomContent(b, size), "")
	req := benchReq(oci.KindBlob, dg)
	waitSource(b, c, req, cache.SourceDisk)
	ctx := b.Context()
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			obj, err := c.Get(ctx, req)
			if err != nil || obj.Source != cache.SourceDisk {
				b.Fatalf("Get: %v, source %v", err, obj)
			}
			body, err := obj.Body(0, -1)
			if err != nil {
				b.Fatal(err)
			}
			body.Close()
		}
	})
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			obj, n, err := getAll(ctx, c, req)
			if err != nil || n != size || obj.Source != cache.SourceDisk {
				b.Fatalf("read %d bytes: %v", n, err)
			}
		}
	})
}

// BenchmarkFillFanOut64 is a cold burst: 64 readers ask for the same 8 MiB
// blob at once, one fill fetches it, and every reader streams it from the
// pending file while it is written. Bytes per second count what all 64
// readers received.
func BenchmarkFillFanOut64(b *testing.B) {
	const (
		size    = 8 << 20
		readers = 64
	)
	o := &memOrigin{}
	c := benchCache(b, o, 0)
	data := randomContent(b, size)
	ctx := b.Context()
	b.ReportAllocs()
	b.SetBytes(size * readers)
	var seq uint64
	for b.Loop() {
		// New content for each round, so that every round is cold.
		b.StopTimer()
		seq++
		content := bytes.Clone(data)
		binary.LittleEndian.PutUint64(content, seq)
		req := benchReq(oci.KindBlob, o.set(content, ""))
		b.StartTimer()

		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Go(func() {
				if _, n, err := getAll(ctx, c, req); err != nil || n != size {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatalf("reader: %v", err)
		}
	}
}
