package cache

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/cacheyd/cacheyd/oci"
)

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
			v := &verifyingReader{r: io.NopCloser(iotest.OneByteReader(bytes.NewReader(tt.body))), h: good.NewHash(), want: good, size: tt.size}
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
