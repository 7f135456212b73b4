package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// ranges wraps a fake origin to record every GET's range, the bytes read
// of each answer and the most answers open at once, and to hold every GET
// but the first (and those pass lets through) until release closes.
type ranges struct {
	up      origintest.Fetcher
	release chan struct{}
	pass    func(oci.Request) bool
	arrived chan oci.Request // if set, told of every GET as it arrives

	mu             sync.Mutex // guards gets, read, open and mostOpen
	gets           []oci.Request
	read           []span // what the cache read of each answer
	open, mostOpen int
}

// span is the bytes [start, end) of the object.
type span struct{ start, end int64 }

func (r *ranges) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Method == http.MethodGet {
		r.mu.Lock()
		r.gets = append(r.gets, *req)
		first := len(r.gets) == 1
		r.open++
		r.mostOpen = max(r.mostOpen, r.open)
		r.mu.Unlock()
		if r.arrived != nil {
			r.arrived <- *req
		}
		if !first && r.release != nil && (r.pass == nil || !r.pass(*req)) {
			select {
			case <-r.release:
			case <-ctx.Done():
				r.closed()
				return nil, ctx.Err()
			}
		}
	}
	resp, err := r.up.Fetch(ctx, req)
	switch {
	case err == nil && resp.Body != nil && req.Method == http.MethodGet:
		resp.Body = &spanBody{ReadCloser: resp.Body, r: r, at: resp.Offset}
	case req.Method == http.MethodGet:
		r.closed()
	}
	return resp, err
}

// closed counts a GET's answer closed, or a GET that got none.
func (r *ranges) closed() {
	r.mu.Lock()
	r.open--
	r.mu.Unlock()
}

func (r *ranges) most() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mostOpen
}

// spanBody records the bytes of the object read through it.
type spanBody struct {
	io.ReadCloser
	r    *ranges
	at   int64
	once sync.Once
}

func (b *spanBody) Close() error {
	b.once.Do(b.r.closed)
	return b.ReadCloser.Close()
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.r.mu.Lock()
		b.r.read = append(b.r.read, span{b.at, b.at + int64(n)})
		b.r.mu.Unlock()
		b.at += int64(n)
	}
	return n, err
}

// readOnce fails t unless the cache read every byte of the object from the
// origin exactly once.
func (r *ranges) readOnce(t *testing.T, size int64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make([]int, size)
	for _, s := range r.read {
		for i := s.start; i < s.end; i++ {
			seen[i]++
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("byte %d read %d times from the origin", i, n)
		}
	}
}

// readWindow asks c for n bytes of the blob data (digest dg) at off, as a
// Range request does, and fails t unless it gets exactly them.
func readWindow(t *testing.T, c *Cache, dg oci.Digest, data []byte, off, n int64) {
	t.Helper()
	req := blobReq(dg)
	req.Wants = oci.Window{Offset: off, Length: n}
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Error(err)
		return
	}
	r, err := obj.Body(off, n)
	if err != nil {
		t.Error(err)
		return
	}
	defer r.Close()
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data[off:off+n]) {
		t.Errorf("reader at %d: %d bytes, %v", off, len(got), err)
	}
}

func (r *ranges) requests() []oci.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]oci.Request(nil), r.gets...)
}

func chunkedCache(t *testing.T, o Origin) *Cache {
	return newTestCache(t, o, func(cfg *Config) {
		cfg.MemoryBytes, cfg.FillChunk, cfg.FillParallel = 0, 64<<10, 4
	})
}

// TestColdSuffixIsOneRoundTrip: a cold Range for the end of a large blob
// is fetched first, on its own, and answered while every other request of
// the fill is held; the rest follows and the whole object is verified and
// kept.
func TestColdSuffixIsOneRoundTrip(t *testing.T) {
	data := randomBytes(t, 1<<20)
	up := origintest.New()
	dg := up.Add(data, "")
	o := &ranges{up: up, release: make(chan struct{})}
	c := chunkedCache(t, o)
	req := blobReq(dg)
	req.Wants.Suffix = 4096
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size != int64(len(data)) {
		t.Fatalf("size %d, want %d", obj.Size, len(data))
	}
	r, err := obj.Body(int64(len(data))-4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data[len(data)-4096:]) {
		t.Fatalf("the window: %d bytes, %v", len(got), err)
	}
	if gets := o.requests(); gets[0].Suffix != 4096 {
		t.Errorf("first GET %+v, want the window itself", gets[0])
	}
	close(o.release)
	c.wg.Wait()
	if !held(c, dg) {
		t.Fatal("the object was not kept whole")
	}
	o.readOnce(t, int64(len(data)))
	if got := fillAndWait(t, c, blobReq(dg)); !bytes.Equal(got, data) {
		t.Error("kept object differs")
	}
}

// TestReadersAtManyOffsetsEachByteOnce: 50 readers at 50 offsets of one
// cold blob each get exact bytes, and every byte is read from the origin
// once.
func TestReadersAtManyOffsetsEachByteOnce(t *testing.T) {
	data := randomBytes(t, 2<<20)
	up := origintest.New()
	dg := up.Add(data, "")
	o := &ranges{up: up}
	c := chunkedCache(t, o)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { readWindow(t, c, dg, data, int64(i)*int64(len(data))/50, 10000) })
	}
	wg.Wait()
	c.wg.Wait()
	o.readOnce(t, int64(len(data)))
	if got := fillAndWait(t, c, blobReq(dg)); !bytes.Equal(got, data) {
		t.Error("kept object differs")
	}
}

// TestCutChunkResumesAlone: a region cut short is resumed from where it was
// cut, and only it.
func TestCutChunkResumesAlone(t *testing.T) {
	data := randomBytes(t, 1<<20)
	up := origintest.New()
	dg := up.Add(data, "")
	o := &ranges{up: origintest.Cut(up, 10000).Times(1)}
	c := chunkedCache(t, o)
	if got := fillAndWait(t, c, blobReq(dg)); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
	gets := o.requests()
	resumed := 0
	for _, g := range gets {
		if g.Offset == 10000 {
			resumed++
		}
	}
	if resumed != 1 {
		t.Errorf("GETs %v: want one resume from 10000", gets)
	}
	o.readOnce(t, int64(len(data)))
}

// TestOriginIgnoringRangeIsOneStream: an origin that answers ranges whole
// is noticed and read as one stream; the object is right.
func TestOriginIgnoringRangeIsOneStream(t *testing.T) {
	for _, hint := range []bool{false, true} {
		t.Run(fmt.Sprintf("window first %v", hint), func(t *testing.T) {
			data := randomBytes(t, 1<<20)
			up := origintest.New()
			dg := up.Add(data, "")
			c := chunkedCache(t, origintest.IgnoreRange(up))
			req := blobReq(dg)
			if hint {
				req.Wants = oci.Window{Offset: 500000, Length: 1000}
			}
			obj, err := c.Get(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("object: %v", err)
			}
			c.wg.Wait()
			if !held(c, dg) {
				t.Error("not kept")
			}
			if n := up.Count(http.MethodGet, oci.KindBlob, string(dg)); n > 4 {
				t.Errorf("%d GETs of an object an origin sends whole", n)
			}
		})
	}
}

// TestCorruptChunkFailsTheFill: a wrong byte in any region fails the fill:
// no whole reader completes, nothing is kept.
func TestCorruptChunkFailsTheFill(t *testing.T) {
	data := randomBytes(t, 1<<20)
	up := origintest.New()
	dg := up.Add(data, "")
	c := chunkedCache(t, origintest.Corrupt(up))
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); err == nil || len(got) >= len(data) {
		t.Errorf("corrupt object read: %d bytes, %v", len(got), err)
	}
	c.wg.Wait()
	if held(c, dg) {
		t.Error("a corrupt object was kept")
	}
	assertNoFiles(t, c.cfg.Dir)
}
