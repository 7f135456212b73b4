package tier

import (
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/cacheyd/cacheyd/oci"
)

// verifyingReader passes a body through while hashing it. Like a fill, it
// always holds back the newest byte until the body has ended and its size
// and digest are checked, so content streamed without a pending file still
// cannot complete wrong: a bad body ends in an error one byte short.
//
// end, if set, is told the verdict once the body has ended: nil, or why it
// is not the content named. A read that fails before the end (the client
// left) tells it nothing.
type verifyingReader struct {
	r     io.ReadCloser
	end   func(error)
	h     hash.Hash
	want  oci.Digest
	size  int64 // -1 unknown
	n     int64 // bytes read from r
	carry []byte
	held  [1]byte
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	off := copy(p, v.carry)
	v.carry = nil
	n, err := v.r.Read(p[off:])
	v.h.Write(p[off : off+n])
	v.n += int64(n)
	total := off + n
	switch {
	case errors.Is(err, io.EOF):
		var bad error
		if v.size >= 0 && v.n != v.size {
			bad = fmt.Errorf("body ended at %d of %d bytes: %w", v.n, v.size, io.ErrUnexpectedEOF)
		} else if !v.want.Matches(v.h) {
			bad = fmt.Errorf("digest mismatch: content is not %s", v.want.Short())
		}
		if v.end != nil {
			v.end(bad)
			v.end = nil
		}
		if bad != nil {
			return max(total-1, 0), bad
		}
		return total, io.EOF
	case err != nil:
		return max(total-1, 0), err
	case total == 0:
		return 0, nil
	}
	v.held[0] = p[total-1]
	v.carry = v.held[:]
	return total - 1, nil
}

func (v *verifyingReader) Close() error { return v.r.Close() }
