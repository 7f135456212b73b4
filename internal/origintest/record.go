package origintest

import (
	"context"
	"net/http"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// Recorder is an origin that keeps a copy of every request passing through
// it to the origin beneath. It is safe for concurrent use.
type Recorder struct {
	next Fetcher
	mu   sync.Mutex // guards reqs
	reqs []oci.Request
}

// Record returns a Recorder in front of next.
func Record(next Fetcher) *Recorder { return &Recorder{next: next} }

// Fetch records req and passes it on.
func (r *Recorder) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, *req)
	r.mu.Unlock()
	return r.next.Fetch(ctx, req)
}

// Unwrap returns the origin beneath r.
func (r *Recorder) Unwrap() Fetcher { return r.next }

// Requests returns the requests so far, oldest first.
func (r *Recorder) Requests() []oci.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]oci.Request(nil), r.reqs...)
}

// GETOffsets returns the Offset of every GET so far, oldest first.
func (r *Recorder) GETOffsets() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, q := range r.reqs {
		if q.Method == http.MethodGet {
			out = append(out, q.Offset)
		}
	}
	return out
}
