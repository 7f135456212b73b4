package s3_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/cacheyd/cacheyd/internal/s3test"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// TestFlush: Flush returns once every upload kept before it has ended,
// each of them stored, and at once when none waits; a Flush whose context
// ends first says so, and the uploads go on.
func TestFlush(t *testing.T) {
	h := newHarness(t, s3test.Start(t), nil)
	if err := h.store.Flush(t.Context()); err != nil {
		t.Fatalf("Flush with nothing queued: %v", err)
	}
	gate := make(chan struct{})
	read := h.files.read
	h.store = reopen(t, h, func(c *s3.Config) {
		c.Uploads = 1
		c.Read = func(dg oci.Digest) (io.ReadCloser, tier.Entry, error) {
			<-gate
			return read(dg)
		}
	})
	const n = 5
	for i := range n {
		h.store.Keep(h.files.add([]byte{byte(i), 'f', 'l', 'u', 's', 'h'}, ""))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h.store.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush with its context ended while uploads wait: %v, want context.Canceled", err)
	}
	close(gate)
	if err := h.store.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	// Every upload had ended when Flush returned: its result is there.
	if got := len(h.results); got != n {
		t.Fatalf("%d uploads had ended when Flush returned, want %d", got, n)
	}
	for range n {
		if r := <-h.results; r != s3.UploadStored {
			t.Errorf("upload: %s, want stored", r)
		}
	}
	if puts := h.sent.count(http.MethodPut); puts != n {
		t.Errorf("PUTs sent: %d, want %d", puts, n)
	}
}
