package cache

import (
	"context"
	"io"
	"os"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// The tiers, as the cache consumes them. The cache opens none: the
// composition root (internal/app) opens the memory and disk tiers and any
// keeper, hands them to New as a Tiers, and closes them once the cache is
// closed. A new tier is one more value there, not a change to the lookup
// (fromTiers) or the commit (commit, keepInMemory, tellKeepers).
//
// The memory copy is not a keeper: the lookup reads it first, a disk hit
// refills it, and it must also lose content that gains a private source,
// where a keeper only ever receives.

// Tiers are the storage tiers a Cache reads and keeps content in. Whoever
// opened them closes them, after Cache.Close (which waits for the fills
// writing into them): the cache never closes a tier.
type Tiers struct {
	// Memory holds small public objects whole, and is looked up first.
	// Nil means none.
	Memory MemoryTier
	// Disk holds everything the cache keeps, and the pending files of
	// fills. Required.
	Disk DiskTier
	// Keepers are told, in order, of every verified public object once the
	// disk tier has committed it. Nil means none.
	Keepers []Keeper
}

// MemoryTier is the memory tier as the cache uses it: the bytes of small
// public objects (tier/memory's *Memory is one). The cache puts there only
// content without a private source, and takes out content that gains one.
type MemoryTier interface {
	// Fits reports whether an object of size bytes may be kept: only then
	// does the cache read one back for the tier.
	Fits(size int64) bool
	// Get returns dg's shared, read-only bytes and record. It is the hit
	// path: it must not allocate.
	Get(dg oci.Digest) ([]byte, tier.Entry, bool)
	// Set offers verified bytes with their record; the tier may decline.
	Set(e tier.Entry, data []byte) bool
	// Delete forgets dg; forgetting what is not held is no error.
	Delete(ctx context.Context, dg oci.Digest) error
}

// DiskTier is the disk tier as the cache uses it: records, files to serve,
// pending files for fills, and manifests put whole. tier/disk's *Disk is
// one through DiskOf.
type DiskTier interface {
	// Stat returns dg's record, or an error wrapping tier.ErrNotFound.
	Stat(ctx context.Context, dg oci.Digest) (tier.Entry, error)
	// OpenFile returns dg's file and record, or an error wrapping
	// tier.ErrNotFound. The caller closes the file.
	OpenFile(dg oci.Digest) (HeldFile, tier.Entry, error)
	// Create opens a pending file for an object of size bytes (-1:
	// unknown), or fails wrapping tier.ErrNoRoom or tier.ErrFailed.
	Create(size int64) (PendingFile, error)
	// Put keeps r's e.Size bytes under e.Digest, verified as they are
	// read, and returns the record now held (tier.Tier's Put).
	Put(ctx context.Context, e tier.Entry, r io.Reader) (tier.Entry, error)
}

// HeldFile is an object the disk tier holds, open to be served.
type HeldFile interface {
	// ReadAt reads the content (a window of a multipart answer, a copy
	// into memory); it fails wrapping tier.ErrMismatch for content found
	// changed, which the tier then forgets.
	io.ReaderAt
	io.Closer
	// Section returns a reader of length bytes from offset and hands the
	// file over to it. For sendfile, a whole read may be the *os.File
	// itself, and a window may offer File() (*os.File, error) (Object.Body).
	Section(ctx context.Context, offset, length int64) (io.ReadCloser, error)
}

// PendingFile is the file a fill writes into: what package fill needs of it
// (fill.Pending), and the commit that keeps it.
type PendingFile interface {
	// File is what the fill writes, and its readers read as it grows.
	File() *os.File
	// Claim counts n more bytes about to be written, claiming room.
	Claim(n int64) error
	// Failed turns a failed write of the file into the fill's error.
	Failed(err error) error
	// Abort removes the file; it does nothing after Commit.
	Abort()
	// Commit keeps the content, which the caller verified to be e, under
	// its digest, and returns the record now held.
	Commit(e tier.Entry) (tier.Entry, error)
}

// Keeper is told of verified public content the disk tier has committed:
// a tier behind the disk (an object store) that receives what the cache
// keeps, never what a client's credentials fetched.
type Keeper interface {
	// Keep is told that the disk tier now holds e's content, verified and
	// with no private source, once per commit (of content already held
	// too), unless the route that brought it reports it kept elsewhere
	// (KeptElsewhere: another replica's, the object store's). It runs on the committing goroutine, a fill's before its
	// readers get their last byte: it must neither block nor fail. A keeper
	// that copies the content queues e and reads the bytes from the disk
	// tier, which the composition root gives it, on a goroutine of its own.
	Keep(e tier.Entry)
}

// DiskFiles is a disk tier whose files are of its own types, as tier/disk's
// *Disk (*disk.File, *disk.Pending): DiskOf makes it a DiskTier.
type DiskFiles[F HeldFile, P PendingFile] interface {
	Stat(ctx context.Context, dg oci.Digest) (tier.Entry, error)
	OpenFile(dg oci.Digest) (F, tier.Entry, error)
	Create(size int64) (P, error)
	Put(ctx context.Context, e tier.Entry, r io.Reader) (tier.Entry, error)
}

// DiskOf is d as a DiskTier. A method whose result is a concrete type
// (*disk.File) is not one whose result is an interface (HeldFile), even
// when the type satisfies it: DiskOf turns the results into the cache's
// interfaces, and a failure into a nil file, not a nil pointer in one.
func DiskOf[F HeldFile, P PendingFile](d DiskFiles[F, P]) DiskTier { return diskFiles[F, P]{d} }

// diskFiles is DiskOf's DiskTier; Stat and Put are d's own.
type diskFiles[F HeldFile, P PendingFile] struct{ DiskFiles[F, P] }

func (d diskFiles[F, P]) OpenFile(dg oci.Digest) (HeldFile, tier.Entry, error) {
	f, e, err := d.DiskFiles.OpenFile(dg)
	if err != nil {
		return nil, e, err
	}
	return f, e, nil
}

func (d diskFiles[F, P]) Create(size int64) (PendingFile, error) {
	p, err := d.DiskFiles.Create(size)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// noMemory is the memory tier of a cache that has none: it holds nothing.
type noMemory struct{}

func (noMemory) Fits(int64) bool                           { return false }
func (noMemory) Get(oci.Digest) ([]byte, tier.Entry, bool) { return nil, tier.Entry{}, false }
func (noMemory) Set(tier.Entry, []byte) bool               { return false }
func (noMemory) Delete(context.Context, oci.Digest) error  { return nil }
