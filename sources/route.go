package sources

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"github.com/cacheyd/cacheyd/oci"
)

// Route is the way of one piece of work (a fill, a shared lookup) to its
// bytes, decided once: the key the cache shares the work by, and the
// sources to ask, in order. Every request of the work goes through it: a
// fill's first request, its chunks and its resumes. It is safe for
// concurrent use (a fill's chunks ask at once).
type Route struct {
	p     *Policy
	key   string
	steps []step
	// buf holds the steps of most routes: an owner, its next member, the
	// parent and the registry, without an allocation of their own.
	buf [4]step
	// at is where a fetch starts: the step that answered last. A failure
	// moves it past the step that failed, never back.
	at atomic.Int32
	// ownerMissed and parentFailed remember, for the route's life, that an
	// owner failed or was passed over and that the parent failed: why the
	// registry is asked (metrics.ClusterDirect).
	ownerMissed, parentFailed atomic.Bool
}

// step is one place a route may ask.
type step struct {
	name Name
	f    Fetcher
}

// KeptElsewhere reports whether the source that answered last keeps what
// it sent and tells its own keepers: the key's owner (another replica,
// which committed it) or the object store (which holds it). A route that
// has fetched nothing yet reports false.
func (r *Route) KeptElsewhere() bool {
	i := int(r.at.Load())
	if i >= len(r.steps) {
		return false
	}
	switch r.steps[i].name {
	case Owner, Store:
		return true
	}
	return false
}

// Key names the route: "" for this cacheyd's own way, else what its
// planners named (the member the work goes to, a child's work while there
// is a parent). The cache shares work only between requests of one key.
func (r *Route) Key() string { return r.key }

// Fetch asks the route's sources for req from where it stands: the first
// that answers, content or not, is the answer; a source's own failure is
// counted and the next asked. A body that then fails in its source's own
// right (wrong bytes, a stall) is counted too, and moves the route past
// that source: the resume asks the next.
func (r *Route) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	err := errNone
	// answer is the registry's own answer (at step answered), passed over
	// for the alternates after it: the answer if none of them has the
	// content, and where its retries go.
	var answer error
	answered := 0
	for i := int(r.at.Load()); i < len(r.steps); i++ {
		s := r.steps[i]
		var resp *oci.Response
		resp, err = s.f.Fetch(ctx, req)
		if s.name == Registry && !errors.Is(err, ErrNotAsked) {
			r.direct(req)
		}
		var f *Failure
		switch {
		case errors.Is(err, ErrNotAsked):
			r.missed(s.name)
			continue
		case errors.As(err, &f):
			r.failed(s.name, f)
			if f.answer && answer == nil {
				answer, answered = f.Err, i
			}
			continue
		}
		r.move(i)
		if err == nil && resp.Body != nil && i+1 < len(r.steps) {
			resp.Body = &watched{ReadCloser: resp.Body, r: r, i: i}
		}
		return resp, err
	}
	if answer != nil {
		r.move(answered)
		return nil, answer
	}
	return nil, err
}

// refuter is what a source that remembers bad answers may add: told that
// what it sent for req was not the digest's bytes, it passes req's digest
// over from then on.
type refuter interface {
	refute(req *oci.Request)
}

// errRefuted is the failure counted for a source whose bytes failed the
// whole object's verification.
var errRefuted = errors.New("the bytes it sent failed verification")

// Refute tells the route that the bytes it brought for req failed
// verification as a whole: a fill fetched in ranges is verified only at
// its end. The source that answered last is counted (wrong), told if it
// remembers such things (an alternate then passes the digest over for the
// next fill), and the route moves past it. The registry, the last word, is
// not moved past.
func (r *Route) Refute(req *oci.Request) {
	i := int(r.at.Load())
	if i >= len(r.steps)-1 {
		return
	}
	s := r.steps[i]
	if s.name == Registry {
		return
	}
	r.failed(s.name, &Failure{Reason: Wrong, Err: errRefuted})
	if rf, ok := s.f.(refuter); ok {
		rf.refute(req)
	}
	r.move(i + 1)
}

// move makes step i where fetches start, unless they start further on.
func (r *Route) move(i int) {
	i = min(i, len(r.steps)-1) // the last source is always asked
	for {
		at := r.at.Load()
		if int(at) >= i || r.at.CompareAndSwap(at, int32(i)) {
			return
		}
	}
}

// missed records that a source passed a request on.
func (r *Route) missed(name Name) {
	if name == Owner {
		r.ownerMissed.Store(true)
	}
}

// failed counts a source's own failure and records it.
func (r *Route) failed(name Name, f *Failure) {
	r.p.m.SourceFailures.WithLabelValues(string(name), string(f.Reason)).Inc()
	r.p.log.Debug("sources: a source failed; asking the next", "source", string(name), "reason", string(f.Reason), "err", f.Err)
	switch name {
	case Owner:
		r.ownerMissed.Store(true)
	case Parent:
		r.parentFailed.Store(true)
	}
}

// direct counts a clustered cacheyd's fetch from the registry by why: the
// parent failed, an owner failed or was passed over, a peer asked, or this
// replica owns the key (or has no member to ask).
func (r *Route) direct(req *oci.Request) {
	if !r.p.clustered || req.Kind.IsListing() {
		return
	}
	why := "owner"
	switch {
	case r.parentFailed.Load():
		why = "parent-failed"
	case r.ownerMissed.Load():
		why = "fallback"
	case req.FromPeer:
		why = "peer"
	}
	r.p.m.ClusterDirect.WithLabelValues(why).Inc()
}

// watched is a body of the route's step i: a read that fails in the
// source's own right (a *Failure) is counted once, and moves the route
// past the source.
type watched struct {
	io.ReadCloser
	r    *Route
	i    int
	done bool
}

func (b *watched) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var f *Failure
	if err != nil && err != io.EOF && !b.done && errors.As(err, &f) {
		b.done = true
		b.r.failed(b.r.steps[b.i].name, f)
		b.r.move(b.i + 1)
	}
	return n, err
}
