package disk

import (
	"fmt"
	"testing"
)

// BenchmarkFillWrite measures what a fill pays to write an object into its
// pending file, in a fill's 128 KiB pieces: with fresh, every op's file is
// kept until the benchmark ends, so each page it writes is a page the
// kernel must find anew (as for a cold burst's fills); without, each file is
// removed after its op and the next one reuses its pages. The gap between
// the two is the machine's, not cacheyd's (bench/README.md, "CPU per byte
// served").
//
//	go test -run XXX -bench FillWrite -benchtime 8x ./tier/disk
func BenchmarkFillWrite(b *testing.B) {
	const size, piece = 64 << 20, 128 << 10
	for _, fresh := range []bool{false, true} {
		b.Run(fmt.Sprintf("fresh=%v", fresh), func(b *testing.B) {
			d, err := Open(Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			<-d.Loaded()
			buf := randomBytes(b, piece)
			b.SetBytes(size)
			var kept []*Pending
			for b.Loop() {
				p, err := d.Create(size)
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < size; off += piece {
					if _, err := p.File().WriteAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}
				if fresh {
					kept = append(kept, p)
					continue
				}
				p.Abort()
				p.File().Close()
			}
			for _, p := range kept {
				p.Abort()
				p.File().Close()
			}
		})
	}
}
