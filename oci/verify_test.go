package oci_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
	"testing/iotest"

	"github.com/cacheyd/cacheyd/oci"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyingReader: a body that is not the content named, or is short,
// ends in an error before its last byte; a right one passes unaltered, and
// the verdict is told.
func TestVerifyingReader(t *testing.T) {
	data := randomBytes(t, 10000)
	good := oci.FromBytes(data)
	bad := append(bytes.Clone(data[:9999]), data[9999]^1)
	tests := []struct {
		name    string
		body    []byte
		size    int64
		wantErr bool
	}{
		{"right bytes", data, int64(len(data)), false},
		{"right bytes, unknown size", data, -1, false},
		{"wrong last byte", bad, int64(len(data)), true},
		{"short body", data[:5000], int64(len(data)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := oci.NewVerifyingReader(io.NopCloser(iotest.OneByteReader(bytes.NewReader(tt.body))), good, tt.size, nil)
			got, err := io.ReadAll(v)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && len(got) >= len(tt.body) {
				t.Errorf("a bad body was passed on whole (%d bytes)", len(got))
			}
			if !tt.wantErr && !bytes.Equal(got, data) {
				t.Error("a good body was altered")
			}
		})
	}
}

// TestVerifyingReaderSmallReads: reads of one byte, which only the held byte
// fits, still make progress: through a whole body, through one whose end
// comes with its last bytes, and through a window short of the end (a
// Range), whose last read asks for one byte.
func TestVerifyingReaderSmallReads(t *testing.T) {
	data := randomBytes(t, 1000)
	dg := oci.FromBytes(data)
	newReader := func(r io.Reader) *oci.VerifyingReader {
		return oci.NewVerifyingReader(io.NopCloser(r), dg, int64(len(data)), nil)
	}
	for _, tt := range []struct {
		name string
		r    io.Reader
		want []byte
	}{
		{"whole", newReader(bytes.NewReader(data)), data},
		{"whole, the end with the last bytes", newReader(nonEmpty{iotest.DataErrReader(bytes.NewReader(data))}), data},
		{"window", io.LimitReader(newReader(bytes.NewReader(data)), 10), data[:10]},
	} {
		// Bounded: a reader that makes no progress fails, not hangs.
		var got []byte
		var err error
		for range 2*len(data) + 10 {
			var b [1]byte
			var n int
			n, err = tt.r.Read(b[:])
			got = append(got, b[:n]...)
			if err != nil {
				break
			}
		}
		if err != io.EOF || !bytes.Equal(got, tt.want) {
			t.Errorf("%s, one byte at a time: %d of %d bytes, %v", tt.name, len(got), len(tt.want), err)
		}
	}
}

// nonEmpty answers an empty read at once, which iotest.DataErrReader does
// not (it reads on, for ever).
type nonEmpty struct{ r io.Reader }

func (r nonEmpty) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return r.r.Read(p)
}
