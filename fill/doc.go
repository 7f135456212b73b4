// Package fill moves one object's bytes from a source into a flight: the
// mechanics of a fill, beneath the cache's policy.
//
// Run makes the first request: the window of the request that started
// the fill, when it asked for one (a lazy pull's footer, say), so that its
// bytes come in one round trip; else the first chunk of a blob, so that a
// blob no larger than a chunk is one request still and a larger one is
// never asked for whole only to be cut off; a manifest, or any object when
// Config.Parallel is 1, whole. A window the object does not hold (416) is
// asked for again as the whole object. The answer's digest, when it names
// one, must be the object's, and a manifest must fit the manifest limit.
//
// Once the size is known, the caller's Create makes the pending file and
// the flight opens. A blob larger than a chunk is then fetched as regions
// (regions.go) of at most Config.Chunk bytes, up to Config.Parallel
// requests at once, in the order readers need them: the region at each
// waiting reader's next byte first, then the lowest missing one. A reader
// whose next byte no request is heading for (stranded) gets a request of
// its own at once, up to Rescuers(Parallel) of them. Which bytes are
// claimed by a request, like which are written, is the flight's to say
// (flight.Flight.Claim and its kin), so each byte has one request. An
// origin that ignores Range is noticed on the first region it answers
// whole: the fill then goes on as one stream. Anything else is one stream,
// in order (stream.go). Each request is the source's to resume after a cut
// (package retry, beneath the source).
//
// Run verifies the object (flight.Flight.Verify) and returns it in its
// pending file; the caller keeps it and then finishes the flight, which
// releases every reader's last byte. On failure Run aborts the pending file
// and the caller finishes the flight with the error. What went wrong in
// what the source sent is marked as the registry's doing (Fault).
//
// fill knows nothing of the cache, tags, private content, the tiers or
// metrics: what it needs, it declares (Source, Pending, Job's funcs). It
// imports only the standard library, oci and flight.
package fill
