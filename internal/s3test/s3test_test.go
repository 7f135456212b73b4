package s3test_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cacheyd/cacheyd/internal/s3test"
)

// TestStart: the server answers with the bucket made, and keeps an object
// in its directory.
func TestStart(t *testing.T) {
	srv := s3test.Start(t)
	ok, err := srv.Client.BucketExists(t.Context(), s3test.Bucket)
	if err != nil || !ok {
		t.Fatalf("BucketExists: %v, %v; want true", ok, err)
	}
	data := []byte("an object")
	if _, err := srv.Client.PutObject(t.Context(), s3test.Bucket, "a/b", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := srv.Client.GetObject(t.Context(), s3test.Bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, data) {
		t.Errorf("GET: %q, %v; want %q", got, err, data)
	}
	if got, err := os.ReadFile(filepath.Join(srv.Dir, s3test.Bucket, "a", "b")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the file: %q, %v; want %q", got, err, data)
	}
}

// TestTwoAtOnce: servers started together each have a port of their own.
func TestTwoAtOnce(t *testing.T) {
	a, b := s3test.Start(t), s3test.Start(t)
	if a.Endpoint == b.Endpoint {
		t.Fatalf("both on %s", a.Endpoint)
	}
}
