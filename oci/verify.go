package oci

import (
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrDigestMismatch is what a VerifyingReader ends with when the body is not
// the content its digest names, or not of its size.
var ErrDigestMismatch = errors.New("content does not match its digest")

// VerifyingReader passes a body through while hashing it, and always holds
// back the newest byte until the body has ended and its size and digest are
// checked, so that content streamed from anywhere cannot complete wrong: a
// bad body ends in an error one byte short.
type VerifyingReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want Digest
	size int64 // -1 unknown
	n    int64 // bytes read from r
	// end, if set, is told the verdict once, at the end of the body: nil,
	// or why it is not the content named. A read that fails before the end
	// tells it nothing.
	end   func(error)
	carry []byte
	held  [1]byte
}

// NewVerifyingReader reads r, which must be the content dg names, of size
// bytes (-1: unknown). end, if not nil, is told the verdict at the end.
func NewVerifyingReader(r io.ReadCloser, dg Digest, size int64, end func(error)) *VerifyingReader {
	return &VerifyingReader{r: r, h: dg.NewHash(), want: dg, size: size, end: end}
}

func (v *VerifyingReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) <= len(v.carry) {
		// Only the held byte fits, and it may go only once the byte after
		// it, or the end, has been read (a window short of the end asks for
		// its last byte so): read through a buffer with room for both.
		var buf [2]byte
		n, err := v.Read(buf[:])
		if n > len(p) {
			// The end came, verified, with both: hand out the first and hold
			// the other; the next read meets the end again.
			v.held[0] = buf[1]
			v.carry = v.held[:]
			n, err = len(p), nil
		}
		copy(p, buf[:n])
		return n, err
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
			bad = fmt.Errorf("body ended at %d of %d bytes: %w: %w", v.n, v.size, io.ErrUnexpectedEOF, ErrDigestMismatch)
		} else if !v.want.Matches(v.h) {
			bad = fmt.Errorf("%w: content is not %s", ErrDigestMismatch, v.want.Short())
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

// Close closes the body.
func (v *VerifyingReader) Close() error { return v.r.Close() }
