// Package flight is the coalescing primitive of cacheyd's read path: one
// object on its way from an origin into the cache, written by one writer
// into one pending file while any number of readers read that same file.
//
// The writer may write its chunks at any offset and in any order, from
// several goroutines at once; each byte is written once. The digest is
// computed over the contiguous prefix as it grows, so chunks that arrive
// ahead of it are hashed (read back from the file) when the gap before them
// is filled. A reader waits only for the bytes of its own window. A reader
// of the whole object (or of an object whose size is unknown) waits for the
// writer's verdict on the whole object before it gets its last byte, so a
// corrupt origin yields a broken response, never a complete wrong one; the
// writer decides, per reader, whether a window waits too (a window not held
// is answered unverified, as a registry answers a Range). A failure aborts
// every reader. Waiting readers are woken in runs rather than at every write: a
// reader's first bytes and its window's end at once, the rest when half a
// MiB is there or 10 ms have passed.
//
// A writer that fetches in regions, several requests at once (package
// fill), claims the bytes each request is heading for (claims.go): the
// flight keeps which bytes are claimed beside which are written, under one
// lock, and answers which come next (a waiting reader's first, or one no
// request is heading for), so that each byte has one request.
//
// flight knows nothing of registries, HTTP, tiers or metrics, and starts
// no goroutines: it imports only the standard library and oci.
package flight
