package flight

import (
	"bytes"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestWakesComeInRuns: a reader's first bytes come at the first write; after
// that, writes smaller than wakeRun leave a waiting reader asleep until they
// add up to wakeRun, or until wakeDelay has passed; a reader that waited its
// wakeDelay out with nothing new is woken by the next byte; the end of its
// window wakes it at once.
func TestWakesComeInRuns(t *testing.T) {
	const piece = 128 << 10
	const size = 2*wakeRun + 3*piece
	synctest.Test(t, func(t *testing.T) {
		data, dg := content(t, size)
		f, _, _ := open(t, dg, size)
		f.Acquire()
		r := f.NewReader(t.Context(), 0, size-1, false) // a window: no verdict needed
		var got atomic.Int64
		var reads atomic.Int32
		done := make(chan []byte)
		go func() {
			defer r.Close()
			var out bytes.Buffer
			buf := make([]byte, size)
			for {
				n, err := r.Read(buf)
				out.Write(buf[:n])
				got.Add(int64(n))
				reads.Add(1)
				if err != nil {
					done <- out.Bytes()
					return
				}
			}
		}()
		off := int64(0)
		write := func(n int64) {
			t.Helper()
			if _, err := f.WriteAt(data[off:off+n], off); err != nil {
				t.Fatal(err)
			}
			off += n
			synctest.Wait()
		}
		expect := func(when string, want int64) {
			t.Helper()
			if g := got.Load(); g != want {
				t.Fatalf("%s: reader has %d bytes, want %d", when, g, want)
			}
		}

		write(piece)
		expect("first write", piece)
		write(piece)
		write(piece)
		expect("two writes short of a run", piece)
		time.Sleep(wakeDelay)
		synctest.Wait()
		expect("after wakeDelay", 3*piece)

		// Nothing new for longer than wakeDelay: the next byte wakes it.
		time.Sleep(3 * wakeDelay)
		synctest.Wait()
		write(1)
		expect("first byte after a stall", 3*piece+1)

		write(piece - 1)
		write(wakeRun - piece)
		expect("a run short of wakeRun", 3*piece+1)
		write(piece)
		expect("a whole run", 3*piece+wakeRun+piece)

		// The window ends a byte before the object: its last bytes wake
		// it, short of wakeRun.
		write(size - 1 - off)
		expect("the window's end", size-1)
		b := <-done
		if !bytes.Equal(b, data[:size-1]) {
			t.Errorf("reader got %d bytes, not the object's first %d", len(b), size-1)
		}
		if n := reads.Load(); n != 6 { // 5 runs and the EOF
			t.Errorf("reader woke to read %d times, want 6", n)
		}
		f.Finish(ErrAborted)
	})
}
