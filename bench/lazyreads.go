package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"

	"github.com/cacheyd/cacheyd/oci"
)

// LazyReads is what a node of the lazy scenarios reads of each layer, the
// way lazy-pulling snapshotters (eStargz, SOCI, Nydus) start a container
// before its layers are whole: the footer first, which says where the
// table of contents is, then the table of contents, which eStargz keeps
// just before its footer, then a few windows of files the container
// reads. Manifests and configs are fetched whole, as those snapshotters
// do. The zero value of each field means its default.
type LazyReads struct {
	// Footer is the suffix read first, as "Range: bytes=-Footer". Zero
	// means 64 KiB.
	Footer int64
	// Window is the size of the table of contents and of each file
	// window. Zero means 256 KiB.
	Window int64
	// Windows is how many file windows each layer gets, at offsets drawn
	// from the layer's digest: the same for every node, straight from
	// upstream or through cacheyd. Zero means 3.
	Windows int
}

// The defaults of LazyReads.
const (
	DefaultLazyFooter  = 64 << 10
	DefaultLazyWindow  = 256 << 10
	DefaultLazyWindows = 3
)

func (l LazyReads) withDefaults() LazyReads {
	if l.Footer == 0 {
		l.Footer = DefaultLazyFooter
	}
	if l.Window == 0 {
		l.Window = DefaultLazyWindow
	}
	if l.Windows == 0 {
		l.Windows = DefaultLazyWindows
	}
	return l
}

// span is one ranged read of a layer: n bytes from off.
type span struct {
	off, n int64
	// suffix sends it as "bytes=-n" (the footer), off being where that
	// suffix starts.
	suffix bool
}

// plan lists the reads of layer d of size bytes, in order: the footer (the
// whole layer when it is smaller), the table of contents in what is left
// before it, then the file windows in what is left before that, each cut
// to fit. A layer too small for a part has none of it, so no byte is read
// twice but for overlapping file windows.
func (l LazyReads) plan(d oci.Digest, size int64) []span {
	if size < 1 {
		return nil
	}
	footer := min(l.Footer, size)
	out := []span{{off: size - footer, n: footer, suffix: true}}
	toc := min(l.Window, size-footer)
	if toc > 0 {
		out = append(out, span{off: size - footer - toc, n: toc})
	}
	files := size - footer - toc // the bytes before the table of contents
	if files < 1 {
		return out
	}
	n := min(l.Window, files)
	seed := sha256.Sum256([]byte(d))
	rnd := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:16])))
	for range l.Windows {
		out = append(out, span{off: rnd.Int64N(files - n + 1), n: n})
	}
	return out
}

// lazyBytes is what one lazy node receives of cat: every manifest and
// config whole, and the planned reads of every layer.
func (l LazyReads) lazyBytes(cat *catalog) int64 {
	var total int64
	for _, o := range cat.objects {
		if o.content == nil {
			total += o.size
			continue
		}
		for _, s := range l.plan(o.digest, o.size) {
			total += s.n
		}
	}
	return total
}
