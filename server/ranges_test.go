package server

import (
	"math"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

func TestParseRange(t *testing.T) {
	const size = 1000
	tests := []struct {
		h    string
		size int64
		want byteRange
		res  rangeResult
	}{
		{"", size, byteRange{}, rangeIgnore},
		{"bytes=0-0", size, byteRange{0, 1}, rangeOK},
		{"bytes=0-999", size, byteRange{0, 1000}, rangeOK},
		{"bytes=0-", size, byteRange{0, 1000}, rangeOK},
		{"bytes=500-", size, byteRange{500, 500}, rangeOK},
		{"bytes=999-", size, byteRange{999, 1}, rangeOK},
		{"bytes=10-20", size, byteRange{10, 11}, rangeOK},
		{"bytes=10-5000", size, byteRange{10, 990}, rangeOK},
		{"bytes=-1", size, byteRange{999, 1}, rangeOK},
		{"bytes=-1000", size, byteRange{0, 1000}, rangeOK},
		{"bytes=-99999999999999999999999", size, byteRange{0, 1000}, rangeOK},
		{"bytes=0-99999999999999999999999", size, byteRange{0, 1000}, rangeOK},
		{"Bytes=1-2", size, byteRange{1, 2}, rangeOK},
		{"bytes= 1-2 ", size, byteRange{1, 2}, rangeOK},
		{"bytes=1000-", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=1000-2000", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=99999999999999999999999-", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=-0", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=0-1,5-6", size, byteRange{}, rangeIgnore},
		{"bytes=0-1,", size, byteRange{}, rangeIgnore},
		{"bytes=2-1", size, byteRange{}, rangeIgnore},
		{"bytes=-", size, byteRange{}, rangeIgnore},
		{"bytes=", size, byteRange{}, rangeIgnore},
		{"bytes=a-b", size, byteRange{}, rangeIgnore},
		{"bytes=+1-2", size, byteRange{}, rangeIgnore},
		{"bytes=1 - 2", size, byteRange{}, rangeIgnore},
		{"bytes=1-2-3", size, byteRange{}, rangeIgnore},
		{"bytes 1-2", size, byteRange{}, rangeIgnore},
		{"items=1-2", size, byteRange{}, rangeIgnore},
		{"bytes=0-", 0, byteRange{}, rangeIgnore},  // empty content has no byte to select
		{"bytes=0-", -1, byteRange{}, rangeIgnore}, // unknown size
	}
	for _, tt := range tests {
		got, res := parseRange(tt.h, tt.size)
		if got != tt.want || res != tt.res {
			t.Errorf("parseRange(%q, %d) = %+v, %d; want %+v, %d", tt.h, tt.size, got, res, tt.want, tt.res)
		}
	}
	if got := (byteRange{10, 11}).contentRange(size); got != "bytes 10-20/1000" {
		t.Errorf("contentRange = %q", got)
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=1-2", "bytes=-5", "bytes=0-1,2-3", "BYTES=99999999999999999999-", "bytes= 7 -", ""} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		r, res := parseRange(h, size)
		switch res {
		case rangeOK:
			if size <= 0 || r.start < 0 || r.length < 1 || r.start > size-r.length {
				t.Fatalf("parseRange(%q, %d) = %+v: window outside content", h, size, r)
			}
		case rangeUnsatisfiable:
			if size <= 0 {
				t.Fatalf("parseRange(%q, %d): unsatisfiable for content of unknown or no size", h, size)
			}
		case rangeIgnore:
		default:
			t.Fatalf("parseRange(%q, %d): result %d", h, size, res)
		}
	})
}

func BenchmarkParseRange(b *testing.B) {
	for _, h := range []string{"bytes=1048576-", "bytes=0-1023", "bytes=-512", "bytes=0-1,5-6"} {
		b.Run(h, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, res := parseRange(h, math.MaxInt32); res == rangeUnsatisfiable {
					b.Fatal("unsatisfiable")
				}
			}
		})
	}
}

func TestWantsOf(t *testing.T) {
	for _, tt := range []struct {
		h    string
		want oci.Window
	}{
		{"", oci.Window{}},
		{"bytes=100-199", oci.Window{Offset: 100, Length: 100}},
		{"bytes=100-", oci.Window{Offset: 100}},
		{"bytes=-65536", oci.Window{Suffix: 65536}},
		{"bytes=0-9, 20-29", oci.Window{Offset: 0, Length: 10}},
		{"bytes=-0", oci.Window{}},
		{"bytes=9-1", oci.Window{}},
		{"items=1-2", oci.Window{}},
		{"bytes=x-2", oci.Window{}},
		{"bytes=5-99999999999999999999", oci.Window{Offset: 5}},
	} {
		if got := wantsOf(tt.h); got != tt.want {
			t.Errorf("wantsOf(%q) = %+v, want %+v", tt.h, got, tt.want)
		}
	}
}
