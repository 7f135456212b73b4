package origintest

import (
	"crypto/rand"
	"io"
	"sync"
	"testing"
)

// Bodies counts bodies handed out and closed, so that a test can prove
// every body was closed by whoever took it. The zero value is ready.
type Bodies struct {
	mu             sync.Mutex // guards opened and closed
	opened, closed int
}

// Track counts body as handed out and returns it with a Close that counts
// it closed, once however often it is called.
func (b *Bodies) Track(body io.ReadCloser) io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opened++
	return &tracked{ReadCloser: body, b: b}
}

// Open reports how many tracked bodies are not closed yet.
func (b *Bodies) Open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened - b.closed
}

type tracked struct {
	io.ReadCloser
	b    *Bodies
	once sync.Once
}

func (t *tracked) Close() error {
	t.once.Do(func() {
		t.b.mu.Lock()
		t.b.closed++
		t.b.mu.Unlock()
	})
	return t.ReadCloser.Close()
}

// ErrReader fails every read with Err.
type ErrReader struct{ Err error }

func (e ErrReader) Read([]byte) (int, error) { return 0, e.Err }

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
