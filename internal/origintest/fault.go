package origintest

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// Fetcher is an origin: what cache.Origin, upstream.Client and a cluster
// origin are, and what every fault wraps and is.
type Fetcher interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Fault is an origin that passes requests on to the origin beneath it and
// spoils what some of them get: those of the methods it applies to, as many
// of them as it has left. Its methods change its reach at any time,
// concurrently with requests, and return it, so that a test can write
// origintest.Cut(o, 100).Times(2). It is safe for concurrent use.
type Fault struct {
	next  Fetcher
	spoil func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error)

	mu      sync.Mutex // guards methods and left
	methods []string   // the methods it applies to; nil for every one
	left    int        // requests still to spoil; negative for every one
}

// newFault is a fault on every request of methods (none: of every method)
// until told otherwise.
func newFault(next Fetcher, spoil func(context.Context, *oci.Request, Fetcher) (*oci.Response, error), methods ...string) *Fault {
	return &Fault{next: next, spoil: spoil, methods: methods, left: -1}
}

// Only makes f apply to requests of these methods alone (http.MethodGet,
// http.MethodHead); none means every method.
func (f *Fault) Only(methods ...string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.methods = slices.Clone(methods)
	return f
}

// Times makes f spoil the next n requests it applies to and then none: a
// fault that runs down. Every request of its methods counts, whether or not
// there was anything to spoil (a body shorter than a cut, an object the
// origin does not hold). Times(0) turns it off.
func (f *Fault) Times(n int) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left = max(n, 0)
	return f
}

// Always makes f spoil every request it applies to from now on. It is how
// a fault starts: Always until Times or Off.
func (f *Fault) Always() *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left = -1
	return f
}

// Off stops f: requests pass as if it were not there, until Always or
// Times.
func (f *Fault) Off() *Fault { return f.Times(0) }

// Left reports how many more requests f will spoil; negative means every
// one.
func (f *Fault) Left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.left
}

// Unwrap returns the origin beneath f.
func (f *Fault) Unwrap() Fetcher { return f.next }

// Fetch passes req on, spoiled if f applies to it.
func (f *Fault) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if !f.take(req) {
		return f.next.Fetch(ctx, req)
	}
	return f.spoil(ctx, req, f.next)
}

// take reports whether f spoils req, counting it.
func (f *Fault) take(req *oci.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.methods != nil && !slices.Contains(f.methods, req.Method) {
		return false
	}
	switch {
	case f.left < 0:
		return true
	case f.left > 0:
		f.left--
		return true
	}
	return false
}

// FakeOf returns the fake beneath o's wrappers (anything with an Unwrap()
// Fetcher method, as Fault and Recorder have), or nil when there is none:
// how a helper that takes any origin finds the fake to ask for its open
// bodies.
func FakeOf(o Fetcher) *Origin {
	for o != nil {
		switch v := o.(type) {
		case *Origin:
			return v
		case interface{ Unwrap() Fetcher }:
			o = v.Unwrap()
		default:
			return nil
		}
	}
	return nil
}

// Func adapts a function to the origin method set.
type Func func(ctx context.Context, req *oci.Request) (*oci.Response, error)

// Fetch calls f.
func (f Func) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) { return f(ctx, req) }

// Unavailable is an origin that cannot be reached at all.
var Unavailable = Func(func(_ context.Context, req *oci.Request) (*oci.Response, error) {
	return nil, errors.Join(errors.New("origin asked for "+req.Reference.String()), oci.ErrUpstreamUnavailable)
})
