// Package origintest is the fake origin of cacheyd's tests, the faults any
// origin can be wrapped in, and the conformance suite every origin passes.
//
// The fake (New) is an in-memory registry with the method set of
// cache.Origin that answers as a registry does (objects by digest, tags,
// listings, Range and suffix windows, 416 past the end, HEAD without a
// body) and counts what it is asked and the bodies it hands out. It has no
// faults of its own.
//
// A fault is a wrapper around any origin, the fake or another wrapper:
//
//	o := origintest.New()
//	dg := o.Add(data, "")
//	up := origintest.Cut(origintest.Pace(o, pace), 1<<20).Times(2)
//
// Gate and Pace hold bodies back (until a channel closes, or as many bytes
// as are sent on one); Cut ends bodies with an error and Hang stops them
// until the request's context ends; Corrupt flips a byte; Fail answers an
// error and Private a refusal; UnknownSize, NoDigest and IgnoreRange answer
// as registries that send no size, no digest or ignore Range. Each returns
// a *Fault whose reach a test changes at any time, from its own goroutine:
// Only (which methods), Times (how many more requests), Always and Off.
// Record keeps the requests that pass it (GETOffsets). Faults that only
// change an answer (Fail, Private) still pass the request on, so the fake
// below counts every request that reached the registry, refused or not;
// FakeOf finds the fake beneath any stack of wrappers.
//
// Conformance is the suite of what every origin must answer alike: the
// fake (Fake, in this package's own test), the upstream client over a
// registry and a replica's cluster origin asking the key's owner. A
// source is dropped in by a function that holds the suite's content
// (Holding) and behaves as asked (Behaviour: honest, refusing, cutting
// or hanging its bodies).
package origintest
