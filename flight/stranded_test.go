package flight

import (
	"io"
	"testing"
	"testing/synctest"
)

// TestStranded: Stranded's channel closes when a reader begins waiting at a
// byte whose previous byte is not written either (or at byte 0 of an empty
// flight), and not for a reader waiting at the end of written bytes, nor
// for one that waits again mid-window; each channel closes once, and a new
// one waits for the next stranded reader.
func TestStranded(t *testing.T) {
	const size = 1 << 20
	synctest.Test(t, func(t *testing.T) {
		data, dg := content(t, size)
		f, _, _ := open(t, dg, size)
		closed := func(ch <-chan struct{}) bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}
		// read starts a reader of n bytes at off that reads to its end.
		read := func(off, n int64) {
			f.Acquire()
			r := f.NewReader(t.Context(), off, n, false)
			go func() {
				defer r.Close()
				_, _ = io.Copy(io.Discard, r)
			}()
			synctest.Wait() // it is waiting, registered under the same lock hold as the close
		}
		write := func(off, n int64) {
			t.Helper()
			if _, err := f.WriteAt(data[off:off+n], off); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}

		ch := f.Stranded()
		read(0, 1000)
		if !closed(ch) {
			t.Fatal("a reader at byte 0 of an empty flight: not stranded")
		}
		write(0, 4096) // it reads its 1000 bytes and ends

		ch = f.Stranded()
		read(100, 8192) // reads to 4096 and waits at the end of the written bytes
		if closed(ch) {
			t.Fatal("a reader waiting at the end of written bytes counted as stranded")
		}
		read(4096, 10) // waits where a write heads
		if closed(ch) {
			t.Fatal("a reader at the first unwritten byte after written ones counted as stranded")
		}
		read(500000, 10)
		if !closed(ch) {
			t.Fatal("a reader in the middle of unwritten bytes: not stranded")
		}
		if again := f.Stranded(); closed(again) {
			t.Fatal("the next channel is closed before the next stranded reader")
		}
		write(4096, 8192-4096+100) // the first window's reader goes on past a wait, and ends
		write(500000, 10)
		ch = f.Stranded()
		read(900000, 10)
		if !closed(ch) {
			t.Fatal("the next stranded reader did not close the next channel")
		}
		write(900000, 10)
		f.Finish(ErrAborted)
	})
}
