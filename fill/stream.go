package fill

import (
	"errors"
	"fmt"
	"io"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
)

// copyInto writes body into f in order, one stream, claiming the pending
// file's room for each write's bytes as they arrive (never for a size the
// source announced). size is the object's size, -1 when unknown; limit
// bounds a manifest, -1 for none.
func copyInto(f *flight.Flight, p Pending, body io.Reader, size, limit int64) (int64, error) {
	buf := make([]byte, Buffer)
	if size > 0 {
		buf = buf[:min(int64(len(buf)), size)]
	}
	var n int64
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			if limit >= 0 && n+int64(m) > limit {
				return n, oci.ErrTooLarge(fmt.Sprintf("manifest exceeds %d bytes", limit))
			}
			if size >= 0 && n+int64(m) > size {
				return n, Fault(fmt.Errorf("upstream sent more than the %d bytes it announced", size))
			}
			if err := p.Claim(int64(m)); err != nil {
				return n, err
			}
			if _, err := f.WriteAt(buf[:m], n); err != nil {
				if errors.Is(err, flight.ErrBeyondSize) {
					return n, Fault(fmt.Errorf("upstream sent more than the %d bytes it announced", size))
				}
				return n, p.Failed(fmt.Errorf("write pending file: %w", err))
			}
			n += int64(m)
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, Fault(fmt.Errorf("read upstream after %d bytes: %w", n, rerr))
		}
	}
}
