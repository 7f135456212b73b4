package registrytest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// memBlobs is the registry's blob storage: pkg/registry's blob handler
// interfaces over a map. Unlike pkg/registry's own in-memory handler it
// takes content without copying it (PutBlob), which keeps seeding hundreds
// of MiB cheap.
type memBlobs struct {
	mu sync.Mutex        // guards m
	m  map[string][]byte // content by digest; never modified once stored
}

var (
	_ registry.BlobStatHandler   = (*memBlobs)(nil)
	_ registry.BlobPutHandler    = (*memBlobs)(nil)
	_ registry.BlobDeleteHandler = (*memBlobs)(nil)
)

func newMemBlobs() *memBlobs { return &memBlobs{m: map[string][]byte{}} }

func (s *memBlobs) lookup(h v1.Hash) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[h.String()]
	if !ok {
		return nil, registry.ErrNotFound
	}
	return b, nil
}

func (s *memBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	b, err := s.lookup(h)
	return int64(len(b)), err
}

// Get returns a reader that is also an io.ReadSeeker, for Range.
func (s *memBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	b, err := s.lookup(h)
	if err != nil {
		return nil, err
	}
	return readSeekNopCloser{bytes.NewReader(b)}, nil
}

// Put stores what rc holds; pkg/registry has it verify the digest as it is
// read.
func (s *memBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	s.store(h, b)
	return nil
}

func (s *memBlobs) Delete(_ context.Context, _ string, h v1.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[h.String()]; !ok {
		return registry.ErrNotFound
	}
	delete(s.m, h.String())
	return nil
}

func (s *memBlobs) store(h v1.Hash, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[h.String()] = b
}

type readSeekNopCloser struct{ *bytes.Reader }

func (readSeekNopCloser) Close() error { return nil }

// PutBlob stores content as a blob, available in every repository (the
// storage is shared, as a registry's is), and returns its digest. The
// registry keeps content itself: the caller must not modify it afterwards.
// Pushing an image whose layers were stored this way uploads only its
// config and manifest.
func (r *Registry) PutBlob(content []byte) (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(content))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("registrytest: digest: %w", err)
	}
	r.blobs.(*memBlobs).store(h, content)
	return h, nil
}
