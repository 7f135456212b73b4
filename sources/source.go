package sources

import (
	"context"
	"errors"

	"github.com/cacheyd/cacheyd/oci"
)

// Name names a source: its place in a policy, and the source label of the
// failures counted.
type Name string

const (
	// Owner is the cluster's member that owns the request's key, and the
	// members ranked after it.
	Owner Name = "owner"
	// Parent is the parent cacheyd, asked as any client would ask it.
	Parent Name = "parent"
	// Registry is the registry the request names (the upstream client).
	Registry Name = "registry"
	// Store is the object store behind this cacheyd's tiers (Set.Store).
	Store Name = "store"
	// Alternate is a registry named to serve another's content by digest
	// (Set.Alternates), each in the operator's order.
	Alternate Name = "alternate"
)

// Reason says why a source failed: the reason label of the failures
// counted.
type Reason string

const (
	// Unreachable: it could not be reached, or refused this cacheyd's
	// token.
	Unreachable Reason = "unreachable"
	// Failing: it answered with a failure of its own (a 5xx it did not mark
	// relayed).
	Failing Reason = "error"
	// Wrong: an answer no such source gives (1xx or 3xx, a range not asked
	// for, another digest, bytes that are not the object).
	Wrong Reason = "wrong"
	// Stalled: its body sent nothing for its idle allowance.
	Stalled Reason = "stalled"
	// Unauthenticated: its answer was not proven with the cluster secret.
	Unauthenticated Reason = "unauthenticated"
	// Loop: the request came back to it through the cacheyds it asks (508).
	Loop Reason = "loop"
	// Missing: it does not hold the content (an alternate's 404).
	Missing Reason = "missing"
	// Limited: the registry answered 429 (its own, or the upstream
	// client's held answer) and alternates follow it (fallback mode).
	Limited Reason = "limited"
	// Reserve: the registry was passed over for a manifest GET, its
	// remaining pull budget below the reserve (fallback mode).
	Reserve Reason = "reserve"
)

// Fetcher fetches content: what every source does, and what a route is.
type Fetcher interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Planner is an entry of a policy's list, planned once per route: the
// places to ask for req, in order, and the key of the work ("" when it
// names none). A route's key is the first a planner of its list names.
//
// keyed is false when a route is being decided for work the cache is
// keying now; true for a request fetched on its own (Policy.Fetch) whose
// work was keyed earlier by req.Route, which the planner keeps to: the
// key it returns then is not used.
type Planner interface {
	Plan(req *oci.Request, keyed bool) (key string, ask []Fetcher)
}

// Just is a planner of one fetcher, always asked: a source that is one
// place and names no work of its own (the registry).
type Just []Fetcher

// Plan returns j.
func (j Just) Plan(*oci.Request, bool) (string, []Fetcher) { return "", j }

// Failure is a source's own failure, as opposed to an answer it gives or
// passes on: the next source is asked. It reads as the error it wraps.
type Failure struct {
	Reason Reason
	Err    error
	// answer: Err is the registry's own answer, passed over for the
	// alternates after it (fallback mode): the route's answer when none
	// of them has the content.
	answer bool
}

// Fail marks err as its source's own failure, for reason.
func Fail(reason Reason, err error) error { return &Failure{Reason: reason, Err: err} }

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// ErrNotAsked is what a source returns when it passes a request on without
// asking anyone: a member skipped after a failure, a parent the request's
// chain of cacheyds cannot reach. The next source is asked; nothing is
// counted (a failure was, when it happened).
var ErrNotAsked = errors.New("sources: not asked")

// errNone is a route's answer when no source of its list was asked.
var errNone = errors.New("sources: no source to ask")
