package s3_test

import (
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// TestOpenChecksTheConfig: Open refuses a config it cannot use, and takes
// one whose store it cannot reach (nothing is asked of it at start).
func TestOpenChecksTheConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  s3.Config
		ok   bool
	}{
		{"no bucket", s3.Config{Endpoint: "http://127.0.0.1:9"}, false},
		{"an endpoint that is no URL", s3.Config{Bucket: "b", Endpoint: "127.0.0.1:9"}, false},
		{"an endpoint with a path", s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:9/bucket"}, false},
		{"a key without its secret", s3.Config{Bucket: "b", AccessKey: "k"}, false},
		{"a part below S3's minimum", s3.Config{Bucket: "b", PartSize: 1 << 20}, false},
		{"a negative timeout", s3.Config{Bucket: "b", Timeout: -1}, false},
		{"AWS, keys from the chain", s3.Config{Bucket: "b", Region: "eu-west-1"}, true},
		{"a store nobody runs", s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:9", PathStyle: true}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := s3.Open(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("Open: %v, want ok %v", err, tt.ok)
			}
			if err == nil {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
}

// TestNoMetricsNoRead: with no Metrics and no Read, Keep drops what it is
// given, counted in Status.
func TestNoMetricsNoRead(t *testing.T) {
	s, err := s3.Open(s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Keep(tier.Entry{Digest: oci.FromBytes([]byte("a")), Size: 1})
	if st := s.Status(); st.Dropped != 1 || st.Bucket != "b" || st.Endpoint != "http://127.0.0.1:9" {
		t.Errorf("Status: %+v, want 1 dropped, bucket b at its endpoint", st)
	}
}
