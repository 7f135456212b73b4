package flight

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"

	"github.com/cacheyd/cacheyd/oci"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memFile is an in-memory File of a fixed size that counts reads.
type memFile struct {
	mu    sync.Mutex // guards b
	b     []byte
	reads atomic.Int64
}

func newMemFile(size int) *memFile { return &memFile{b: make([]byte, size)} }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if int(off)+len(p) > len(m.b) {
		m.b = append(m.b, make([]byte, int(off)+len(p)-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.reads.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func content(t testing.TB, n int) ([]byte, oci.Digest) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, oci.FromBytes(b)
}

// open starts a flight of data's digest on a memFile and counts releases.
func open(t testing.TB, dg oci.Digest, size int64) (*Flight, *memFile, *atomic.Int32) {
	f := New(dg)
	file := newMemFile(int(max(size, 0)))
	var released atomic.Int32
	f.Open(file, size, func() { released.Add(1) })
	return f, file, &released
}

// chunks cuts [0, n) into pieces of at most size bytes, in a random order.
func chunks(n, size int64, seed uint64) [][2]int64 {
	var out [][2]int64
	for off := int64(0); off < n; off += size {
		out = append(out, [2]int64{off, min(off+size, n)})
	}
	rng := mrand.New(mrand.NewPCG(seed, 2))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestOutOfOrderWritesReadersEverywhere: chunks written in any order by
// several goroutines are read exactly by readers at every offset, each
// window waiting only for its own bytes; the digest over the prefix comes
// out right; the last byte of each whole read waits for the verdict.
func TestOutOfOrderWritesReadersEverywhere(t *testing.T) {
	const size, chunk = 64 << 10, 3000
	data, dg := content(t, size)
	for seed := range uint64(8) {
		synctest.Test(t, func(t *testing.T) {
			f, _, released := open(t, dg, size)
			type result struct {
				off, n int64
				got    []byte
				err    error
			}
			results := make(chan result, 64)
			var readers sync.WaitGroup
			offsets := []int64{0, 1, chunk - 1, chunk, size / 2, size - chunk, size - 2, size - 1}
			for _, off := range offsets {
				for _, n := range []int64{-1, 1, 1000} {
					if !f.Acquire() {
						t.Fatal("acquire on a live flight failed")
					}
					r := f.NewReader(t.Context(), off, n, false)
					readers.Go(func() {
						defer r.Close()
						got, err := io.ReadAll(r)
						results <- result{off, n, got, err}
					})
				}
			}
			var writers sync.WaitGroup
			work := make(chan [2]int64)
			for range 4 {
				writers.Go(func() {
					for c := range work {
						if _, err := f.WriteAt(data[c[0]:c[1]], c[0]); err != nil {
							t.Errorf("WriteAt(%d): %v", c[0], err)
						}
					}
				})
			}
			for _, c := range chunks(size, chunk, seed) {
				work <- c
			}
			close(work)
			writers.Wait()
			synctest.Wait()
			// Everything is written; only readers of the whole object wait.
			for range len(results) {
				r := <-results
				end := size
				if r.n >= 0 {
					end = int(min(r.off+r.n, size))
				}
				if r.off == 0 && end == size {
					t.Errorf("reader of the whole object finished before the verdict")
				}
				if r.err != nil || !bytes.Equal(r.got, data[r.off:end]) {
					t.Errorf("reader at %d for %d: %d bytes, err %v", r.off, r.n, len(r.got), r.err)
				}
			}
			if err := f.Verify(size); err != nil {
				t.Fatal(err)
			}
			f.Finish(nil)
			readers.Wait()
			close(results)
			for r := range results {
				if r.off != 0 || r.err != nil || !bytes.Equal(r.got, data) {
					t.Errorf("reader at %d after the verdict: %d bytes, err %v; want only whole readers, whole", r.off, len(r.got), r.err)
				}
			}
			if n := released.Load(); n != 1 {
				t.Errorf("release ran %d times, want once", n)
			}
		})
	}
}

// TestHeldWindowWaitsForTheVerdict: with hold, a window short of the end
// waits for the whole object's verdict before its own last byte; without,
// it is answered once its bytes are in.
func TestHeldWindowWaitsForTheVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data, dg := content(t, 10000)
		f, _, _ := open(t, dg, int64(len(data)))
		f.Acquire()
		f.Acquire()
		held := f.NewReader(t.Context(), 100, 100, true)
		free := f.NewReader(t.Context(), 100, 100, false)
		if _, err := f.WriteAt(data[:5000], 0); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(free)
		if err != nil || !bytes.Equal(got, data[100:200]) {
			t.Fatalf("unheld window: %v", err)
		}
		var n atomic.Int64
		done := make(chan error)
		go func() {
			b, err := io.ReadAll(held)
			n.Store(int64(len(b)))
			done <- err
		}()
		synctest.Wait()
		if got := n.Load(); got != 0 {
			t.Fatalf("held window finished with %d bytes before the verdict", got)
		}
		if _, err := f.WriteAt(data[5000:], 5000); err != nil {
			t.Fatal(err)
		}
		if err := f.Verify(int64(len(data))); err != nil {
			t.Fatal(err)
		}
		f.Finish(nil)
		if err := <-done; err != nil || n.Load() != 100 {
			t.Errorf("held window: %d bytes, %v", n.Load(), err)
		}
		held.Close()
		free.Close()
	})
}

// TestCorruptObjectNeverCompletes: bytes that do not match the digest fail
// Verify; once the writer finishes with that error, the whole reader and
// every held window to the end have had everything but the last byte at
// most, and fail. (A window without hold is answered unverified, as a
// registry answers a Range: TestHeldWindowWaitsForTheVerdict.)
func TestCorruptObjectNeverCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data, dg := content(t, 50000)
		bad := bytes.Clone(data)
		bad[len(bad)/3] ^= 1
		f, _, released := open(t, dg, int64(len(data)))
		var readers sync.WaitGroup
		for off := range int64(5) {
			f.Acquire()
			r := f.NewReader(t.Context(), off*10000, -1, off > 0)
			readers.Go(func() {
				defer r.Close()
				got, err := io.ReadAll(r)
				if err == nil || int64(len(got)) >= int64(len(data))-off*10000 {
					t.Errorf("reader at %d: %d bytes, err %v; want a broken read", off*10000, len(got), err)
				}
			})
		}
		for _, c := range chunks(int64(len(bad)), 7000, 3) {
			if _, err := f.WriteAt(bad[c[0]:c[1]], c[0]); err != nil {
				t.Fatal(err)
			}
		}
		err := f.Verify(int64(len(bad)))
		if err == nil {
			t.Fatal("corrupt object verified")
		}
		f.Finish(err)
		readers.Wait()
		if released.Load() != 1 {
			t.Errorf("release ran %d times", released.Load())
		}
	})
}

// TestAbortAtEveryStage: a flight that fails before it opens, after it
// opened, in the middle of its writes, or after a successful Verify fails
// every reader, waiting or to come, with the writer's error.
func TestAbortAtEveryStage(t *testing.T) {
	data, dg := content(t, 30000)
	cause := errors.New("origin went away")
	stages := []struct {
		name    string
		written int
		open    bool
		verify  bool
	}{
		{"before open", 0, false, false},
		{"after open", 0, true, false},
		{"mid-write", 12345, true, false},
		{"all written", len(data), true, false},
		{"verified", len(data), true, true},
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := New(dg)
				var released atomic.Int32
				waitErr := make(chan error, 1)
				go func() { waitErr <- f.Wait(t.Context()) }()
				var readers sync.WaitGroup
				if st.open {
					f.Open(newMemFile(len(data)), int64(len(data)), func() { released.Add(1) })
					if err := <-waitErr; err != nil {
						t.Fatalf("Wait after Open: %v", err)
					}
					if _, err := f.WriteAt(data[:st.written], 0); err != nil {
						t.Fatal(err)
					}
					for _, off := range []int64{0, 9999, int64(len(data)) - 1} {
						f.Acquire()
						r := f.NewReader(t.Context(), off, -1, false)
						readers.Go(func() {
							defer r.Close()
							// A window may end before the failure; the whole
							// object never does.
							got, err := io.ReadAll(r)
							if off == 0 || off+int64(len(got)) < int64(len(data)) {
								if !errors.Is(err, cause) {
									t.Errorf("reader at %d: %d bytes, %v, want the cause", off, len(got), err)
								}
							}
						})
					}
					if st.verify {
						if err := f.Verify(int64(len(data))); err != nil {
							t.Fatal(err)
						}
					}
				}
				synctest.Wait()
				late := st.open && f.Acquire() // a reader that joined and reads only after the end
				f.Finish(cause)
				readers.Wait()
				if !st.open {
					if err := <-waitErr; !errors.Is(err, cause) {
						t.Errorf("Wait: %v, want the cause", err)
					}
				}
				if err := f.Wait(t.Context()); st.open != (err == nil) || (!st.open && !errors.Is(err, cause)) {
					t.Errorf("Wait after the end: %v", err)
				}
				if late {
					r := f.NewReader(t.Context(), 0, -1, false)
					if _, err := io.ReadAll(r); !errors.Is(err, cause) {
						t.Errorf("a reader after the failure: %v", err)
					}
					r.Close()
				}
				if want := int32(map[bool]int32{true: 1}[st.open]); released.Load() != want {
					t.Errorf("release ran %d times, want %d", released.Load(), want)
				}
				if f.Acquire() {
					t.Error("acquired a flight whose last reference is gone")
				}
			})
		})
	}
}

// TestReaderContextEndsOnlyItsWait: a reader whose context ends stops with
// its cause; the others and the writer go on.
func TestReaderContextEndsOnlyItsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data, dg := content(t, 1000)
		f, _, _ := open(t, dg, int64(len(data)))
		ctx, cancel := context.WithCancelCause(t.Context())
		gone := errors.New("client left")
		f.Acquire()
		f.Acquire()
		leaving := f.NewReader(ctx, 0, -1, false)
		staying := f.NewReader(t.Context(), 0, -1, false)
		errc := make(chan error, 1)
		go func() { _, err := io.ReadAll(leaving); errc <- err }()
		synctest.Wait()
		cancel(gone)
		if err := <-errc; !errors.Is(err, gone) {
			t.Errorf("leaving reader: %v, want its cause", err)
		}
		leaving.Close()
		if _, err := f.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Verify(int64(len(data))); err != nil {
			t.Fatal(err)
		}
		f.Finish(nil)
		got, err := io.ReadAll(staying)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("staying reader: %v", err)
		}
		staying.Close()
	})
}

// TestUnknownSizeHoldsTheNewestByte: without a size, writes follow one
// another, and every reader is one byte behind until the verdict.
func TestUnknownSizeHoldsTheNewestByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data, dg := content(t, 4096)
		f, _, _ := open(t, dg, -1)
		if _, err := f.WriteAt(data[100:200], 100); err == nil {
			t.Error("a write ahead of the others accepted without a size")
		}
		f.Acquire()
		r := f.NewReader(t.Context(), 0, -1, false)
		if _, err := f.WriteAt(data[:1000], 0); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := io.ReadAtLeast(r, buf, 999)
		if err != nil || n != 999 {
			t.Fatalf("read %d, %v; want 999 (the newest byte held)", n, err)
		}
		if _, err := f.WriteAt(data[1000:], 1000); err != nil {
			t.Fatal(err)
		}
		if err := f.Verify(int64(len(data))); err != nil {
			t.Fatal(err)
		}
		f.Finish(nil)
		rest, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(append(buf[:n:n], rest...), data) {
			t.Errorf("rest: %v", err)
		}
		r.Close()
	})
}

// TestWritesAreChecked: overlapping writes, writes past the size and a
// Finish without a verified object are refused.
func TestWritesAreChecked(t *testing.T) {
	data, dg := content(t, 1000)
	f, _, _ := open(t, dg, int64(len(data)))
	if _, err := f.WriteAt(data[100:300], 100); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[200:400], 200); !errors.Is(err, ErrOverlap) {
		t.Errorf("overlapping write: %v", err)
	}
	if _, err := f.WriteAt(make([]byte, 10), 995); !errors.Is(err, ErrBeyondSize) {
		t.Errorf("write past the size: %v", err)
	}
	if err := f.Verify(int64(len(data))); err == nil {
		t.Error("an object with gaps verified")
	}
	f.Acquire()
	r := f.NewReader(context.Background(), 0, -1, false)
	f.Finish(nil) // without a verified object: a failure
	if _, err := io.ReadAll(r); err == nil {
		t.Error("a flight finished without a verified object was read to its end")
	}
	r.Close()
}

// TestReadersAtEveryOffset: for a small object written in shuffled chunks,
// a reader at every offset, whole or a window, gets exactly its bytes.
func TestReadersAtEveryOffset(t *testing.T) {
	const size = 300
	data, dg := content(t, size)
	synctest.Test(t, func(t *testing.T) {
		f, _, released := open(t, dg, size)
		var readers sync.WaitGroup
		for off := int64(0); off < size; off++ {
			for _, n := range []int64{-1, 1, 17} {
				f.Acquire()
				r := f.NewReader(t.Context(), off, n, off%2 == 0)
				readers.Go(func() {
					defer r.Close()
					end := int64(size)
					if n >= 0 {
						end = min(off+n, size)
					}
					if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data[off:end]) {
						t.Errorf("reader at %d for %d: %d bytes, %v", off, n, len(got), err)
					}
				})
			}
		}
		for _, c := range chunks(size, 7, 5) {
			if _, err := f.WriteAt(data[c[0]:c[1]], c[0]); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Verify(size); err != nil {
			t.Fatal(err)
		}
		f.Finish(nil)
		readers.Wait()
		if released.Load() != 1 {
			t.Errorf("release ran %d times", released.Load())
		}
	})
}

// TestNextGivesAFileOfItsOwn: a reader that sends from the file gets one of
// its own, positioned at its next byte, for exactly the bytes it may send;
// two such readers do not move each other's offsets.
func TestNextGivesAFileOfItsOwn(t *testing.T) {
	data, dg := content(t, 100000)
	file, err := os.CreateTemp(t.TempDir(), "pending-")
	if err != nil {
		t.Fatal(err)
	}
	f := New(dg)
	f.Open(file, int64(len(data)), func() { file.Close() })
	type sender interface {
		Next() (*os.File, int64, error)
		Advance(int64)
	}
	read := func(r io.ReadCloser) ([]byte, error) {
		s := r.(sender)
		var got []byte
		for {
			own, n, err := s.Next()
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(own, buf); err != nil {
				return got, err
			}
			s.Advance(n)
			got = append(got, buf...)
		}
	}
	f.Acquire()
	f.Acquire()
	a := f.NewReader(t.Context(), 0, 50000, false)
	b := f.NewReader(t.Context(), 30000, 20000, false)
	if _, err := f.WriteAt(data[:60000], 0); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		r         io.ReadCloser
		from, end int
	}{{a, 0, 50000}, {b, 30000, 50000}} {
		got, err := read(tt.r)
		if err != nil || !bytes.Equal(got, data[tt.from:tt.end]) {
			t.Errorf("window [%d, %d): %d bytes, %v", tt.from, tt.end, len(got), err)
		}
		tt.r.Close()
	}
	if _, err := f.WriteAt(data[60000:], 60000); err != nil {
		t.Fatal(err)
	}
	if err := f.Verify(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	f.Finish(nil)
}

// TestReadersAndProgress: Readers counts the references beside the
// writer's, and Progress the bytes written, wherever they are.
func TestReadersAndProgress(t *testing.T) {
	f := New(oci.FromBytes([]byte("0123456789")))
	if n := f.Readers(); n != 0 {
		t.Errorf("readers of a new flight = %d, want 0", n)
	}
	f.Acquire()
	f.Acquire()
	f.Release()
	if n := f.Readers(); n != 1 {
		t.Errorf("readers = %d, want 1", n)
	}
	f.Open(newMemFile(10), 10, nil)
	for _, w := range []struct {
		off int64
		p   string
	}{{6, "6789"}, {0, "01"}} {
		if _, err := f.WriteAt([]byte(w.p), w.off); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.Progress(); n != 6 {
		t.Errorf("progress = %d, want 6", n)
	}
}
