package flight

import (
	"io"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
)

// claimsFlight opens a flight of size 100 with written's bytes written and
// claimed's claims made.
func claimsFlight(t *testing.T, written, claimed []Span) *Flight {
	t.Helper()
	data, dg := content(t, 100)
	f, _, _ := open(t, dg, 100)
	for _, w := range written {
		if _, err := f.WriteAt(data[w.Start:w.End], w.Start); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range claimed {
		if !f.Claim(c) {
			t.Fatalf("setup: claim %v refused", c)
		}
	}
	t.Cleanup(func() { f.Finish(ErrAborted) })
	return f
}

// TestClaims: each query on written and claimed bytes, with no reader
// waiting, answers the exact span and leaves the exact claims.
func TestClaims(t *testing.T) {
	for _, tc := range []struct {
		name             string
		written, claimed []Span
		op               func(f *Flight) (Span, bool)
		want             Span
		ok               bool
		after            []Span
	}{
		{
			name: "claim free bytes",
			op:   func(f *Flight) (Span, bool) { return Span{10, 20}, f.Claim(Span{10, 20}) },
			want: Span{10, 20}, ok: true, after: []Span{{10, 20}},
		},
		{
			name:    "claim over a claim",
			claimed: []Span{{15, 30}},
			op:      func(f *Flight) (Span, bool) { return Span{10, 20}, f.Claim(Span{10, 20}) },
			want:    Span{10, 20}, ok: false, after: []Span{{15, 30}},
		},
		{
			name:    "claim over written bytes",
			written: []Span{{0, 11}},
			op:      func(f *Flight) (Span, bool) { return Span{10, 20}, f.Claim(Span{10, 20}) },
			want:    Span{10, 20}, ok: false, after: nil,
		},
		{
			name: "claim past the end",
			op:   func(f *Flight) (Span, bool) { return Span{90, 101}, f.Claim(Span{90, 101}) },
			want: Span{90, 101}, ok: false, after: nil,
		},
		{
			name: "claim nothing",
			op:   func(f *Flight) (Span, bool) { return Span{5, 5}, f.Claim(Span{5, 5}) },
			want: Span{5, 5}, ok: false, after: nil,
		},
		{
			name: "next from 0, at most n",
			op:   func(f *Flight) (Span, bool) { return f.ClaimNext(30) },
			want: Span{0, 30}, ok: true, after: []Span{{0, 30}},
		},
		{
			name:    "next past written and claimed, up to the next claim",
			written: []Span{{0, 10}}, claimed: []Span{{10, 20}, {25, 40}},
			op:   func(f *Flight) (Span, bool) { return f.ClaimNext(30) },
			want: Span{20, 25}, ok: true, after: []Span{{10, 20}, {20, 25}, {25, 40}},
		},
		{
			name:    "next up to written bytes",
			written: []Span{{0, 10}, {50, 60}}, claimed: []Span{{10, 20}},
			op:   func(f *Flight) (Span, bool) { return f.ClaimNext(100) },
			want: Span{20, 50}, ok: true, after: []Span{{10, 20}, {20, 50}},
		},
		{
			name:    "next when everything is written or claimed",
			written: []Span{{0, 50}}, claimed: []Span{{50, 100}},
			op: func(f *Flight) (Span, bool) { return f.ClaimNext(10) },
			ok: false, after: []Span{{50, 100}},
		},
		{
			name:    "stranded without readers",
			claimed: []Span{{0, 10}},
			op:      func(f *Flight) (Span, bool) { return f.ClaimStranded(10) },
			ok:      false, after: []Span{{0, 10}},
		},
		{
			name:    "extend by n",
			claimed: []Span{{0, 10}},
			op:      func(f *Flight) (Span, bool) { return f.Extend(Span{0, 10}, 20) },
			want:    Span{0, 30}, ok: true, after: []Span{{0, 30}},
		},
		{
			name:    "extend up to the next claim",
			claimed: []Span{{0, 10}, {15, 20}},
			op:      func(f *Flight) (Span, bool) { return f.Extend(Span{0, 10}, 20) },
			want:    Span{0, 15}, ok: true, after: []Span{{0, 15}, {15, 20}},
		},
		{
			name:    "extend against a claim",
			claimed: []Span{{0, 10}, {10, 20}},
			op:      func(f *Flight) (Span, bool) { return f.Extend(Span{0, 10}, 20) },
			want:    Span{0, 10}, ok: false, after: []Span{{0, 10}, {10, 20}},
		},
		{
			name:    "extend against written bytes",
			written: []Span{{10, 12}}, claimed: []Span{{0, 10}},
			op:   func(f *Flight) (Span, bool) { return f.Extend(Span{0, 10}, 20) },
			want: Span{0, 10}, ok: false, after: []Span{{0, 10}},
		},
		{
			name:    "extend to the end of the object",
			claimed: []Span{{90, 95}},
			op:      func(f *Flight) (Span, bool) { return f.Extend(Span{90, 95}, 20) },
			want:    Span{90, 100}, ok: true, after: []Span{{90, 100}},
		},
		{
			name:    "extend at the end of the object",
			claimed: []Span{{90, 100}},
			op:      func(f *Flight) (Span, bool) { return f.Extend(Span{90, 100}, 20) },
			want:    Span{90, 100}, ok: false, after: []Span{{90, 100}},
		},
		{
			name: "extend nothing claims afresh",
			op:   func(f *Flight) (Span, bool) { return f.Extend(Span{40, 40}, 5) },
			want: Span{40, 45}, ok: true, after: []Span{{40, 45}},
		},
		{
			name:    "skip past written and claimed bytes",
			written: []Span{{10, 30}}, claimed: []Span{{0, 10}, {30, 40}, {60, 70}},
			op:   func(f *Flight) (Span, bool) { return f.Skip(Span{0, 10}) },
			want: Span{40, 60}, ok: true, after: []Span{{30, 40}, {40, 60}, {60, 70}},
		},
		{
			name:    "skip with nothing left",
			written: []Span{{10, 100}}, claimed: []Span{{0, 10}},
			op:   func(f *Flight) (Span, bool) { return f.Skip(Span{0, 10}) },
			want: Span{0, 10}, ok: false, after: []Span{{0, 10}},
		},
		{
			name:    "unclaim",
			claimed: []Span{{0, 10}, {10, 20}},
			op:      func(f *Flight) (Span, bool) { f.Unclaim(Span{0, 10}); return f.ClaimNext(100) },
			want:    Span{0, 10}, ok: true, after: []Span{{0, 10}, {10, 20}},
		},
		{
			name:    "unclaim what is not a claim",
			claimed: []Span{{0, 10}},
			op:      func(f *Flight) (Span, bool) { f.Unclaim(Span{0, 5}); return Span{}, true },
			ok:      true, after: []Span{{0, 10}},
		},
		{
			name:    "writable: own claim, less what is written",
			written: []Span{{0, 5}}, claimed: []Span{{5, 20}},
			op:   func(f *Flight) (Span, bool) { return f.Writable(Span{5, 20}, 0, 20), true },
			want: Span{5, 20}, ok: true, after: []Span{{5, 20}},
		},
		{
			name:    "writable: up to another's claim",
			claimed: []Span{{0, 20}, {25, 30}},
			op:      func(f *Flight) (Span, bool) { return f.Writable(Span{0, 20}, 10, 40), true },
			want:    Span{10, 25}, ok: true, after: []Span{{0, 20}, {25, 30}},
		},
		{
			name:    "writable: past another's claim",
			claimed: []Span{{0, 10}, {10, 20}},
			op:      func(f *Flight) (Span, bool) { return f.Writable(Span{0, 10}, 5, 40), true },
			want:    Span{5, 10}, ok: true, after: []Span{{0, 10}, {10, 20}},
		},
		{
			name:    "writable: skips another's claim at off",
			claimed: []Span{{0, 10}, {10, 20}},
			op:      func(f *Flight) (Span, bool) { return f.Writable(Span{0, 10}, 10, 40), true },
			want:    Span{20, 40}, ok: true, after: []Span{{0, 10}, {10, 20}},
		},
		{
			name:    "writable: nothing",
			written: []Span{{0, 30}},
			op:      func(f *Flight) (Span, bool) { return f.Writable(Span{}, 10, 20), true },
			want:    Span{20, 20}, ok: true, after: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := claimsFlight(t, tc.written, tc.claimed)
			got, ok := tc.op(f)
			if ok != tc.ok || (ok || tc.want != (Span{})) && got != tc.want {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
			if after := f.Claims(); !slices.Equal(after, tc.after) {
				t.Errorf("claims %v, want %v", after, tc.after)
			}
		})
	}
}

// TestClaimsBeforeOpen: a flight without a size has no bytes to claim.
func TestClaimsBeforeOpen(t *testing.T) {
	_, dg := content(t, 10)
	f := New(dg)
	defer f.Finish(ErrAborted)
	if f.Claim(Span{0, 10}) {
		t.Error("a claim before Open")
	}
	if s, ok := f.ClaimNext(10); ok {
		t.Errorf("ClaimNext before Open: %v", s)
	}
}

// TestClaimsFollowReaders: ClaimNext serves the lowest waiting reader
// first, past what is claimed for it already; ClaimStranded only a reader
// whose own next byte nobody is heading for.
func TestClaimsFollowReaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 1000
		_, dg := content(t, size)
		f, _, _ := open(t, dg, size)
		read := func(off int64) {
			f.Acquire()
			r := f.NewReader(t.Context(), off, 10, false)
			go func() {
				defer r.Close()
				_, _ = io.Copy(io.Discard, r)
			}()
		}
		read(700)
		read(300)
		synctest.Wait() // both wait
		steps := []struct {
			name string
			op   func() (Span, bool)
			want Span
			ok   bool
		}{
			{"next: the lowest reader", func() (Span, bool) { return f.ClaimNext(50) }, Span{300, 350}, true},
			{"stranded: the other reader", func() (Span, bool) { return f.ClaimStranded(50) }, Span{700, 750}, true},
			{"stranded: none left", func() (Span, bool) { return f.ClaimStranded(50) }, Span{}, false},
			{"next: after the first reader's claim", func() (Span, bool) { return f.ClaimNext(50) }, Span{350, 400}, true},
		}
		for _, s := range steps {
			got, ok := s.op()
			if got != s.want || ok != s.ok {
				t.Errorf("%s: %v, %v; want %v, %v", s.name, got, ok, s.want, s.ok)
			}
		}
		if want := []Span{{300, 350}, {350, 400}, {700, 750}}; !slices.Equal(f.Claims(), want) {
			t.Errorf("claims %v, want %v", f.Claims(), want)
		}
		f.Finish(ErrAborted)
		synctest.Wait()
	})
}

// TestEachByteHasOneClaimant: writers claiming, writing and giving back
// at once, by every kind of claim, claim each byte exactly once; no write
// overlaps and the object is whole.
func TestEachByteHasOneClaimant(t *testing.T) {
	const size, chunk, writers = 1 << 20, 4096, 8
	data, dg := content(t, size)
	f, _, _ := open(t, dg, size)
	counts := make([]int32, size)
	var mu sync.Mutex // guards counts and claims
	claims := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for {
				var s Span
				var ok bool
				switch w % 3 {
				case 0:
					s, ok = f.ClaimNext(chunk)
				case 1:
					// A stream running on: claim a chunk, then extend it.
					if s, ok = f.ClaimNext(chunk / 2); ok {
						s, _ = f.Extend(s, chunk/2)
					}
				default:
					// A stream of the whole object skipping what others have.
					s, ok = f.Skip(Span{})
					if ok && s.Len() > chunk {
						f.Unclaim(s)
						if ok = f.Claim(Span{s.Start, s.Start + chunk}); ok {
							s = Span{s.Start, s.Start + chunk}
						} else {
							continue // another claimed it meanwhile
						}
					}
				}
				if !ok {
					return
				}
				mu.Lock()
				claims++
				for i := s.Start; i < s.End; i++ {
					counts[i]++
				}
				mu.Unlock()
				if _, err := f.WriteAt(data[s.Start:s.End], s.Start); err != nil {
					t.Error(err)
					return
				}
				f.Unclaim(s)
			}
		})
	}
	wg.Wait()
	for i, n := range counts {
		if n != 1 {
			t.Fatalf("byte %d claimed %d times", i, n)
		}
	}
	if got := f.Claims(); len(got) != 0 {
		t.Errorf("claims left: %v", got)
	}
	if err := f.Verify(size); err != nil {
		t.Fatal(err)
	}
	f.Finish(nil)
	if claims < size/chunk {
		t.Errorf("%d claims of at most %d bytes for %d bytes", claims, chunk, size)
	}
}
