package tier

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/cacheyd/cacheyd/oci"
)

// Entry is a tier's record of one object: what it is, and where it came from
// when it came with a client's credentials.
type Entry struct {
	Digest oci.Digest
	Size   int64
	// MediaType is a manifest's media type; "" for content known only as
	// a blob.
	MediaType string
	// Private lists the sources ("registry/repository") where the content
	// was fetched only with a client's credentials, Public those where it
	// was fetched as cacheyd once it had a private source. Both are nil
	// for public content. The tier keeps them and never shortens them but
	// to bound them (MaxSources); what they mean is the cache's business.
	Private []string
	Public  []string
}

// Marked reports whether the content has a private source.
func (e Entry) Marked() bool { return len(e.Private) > 0 }

// MaxSources bounds each source list of an Entry; past it the oldest source
// is dropped.
const MaxSources = 32

// Merge is the record of content held as old and put again as e: a media
// type is learnt and never forgotten, sources are added and never removed
// (but for the bound).
func Merge(old, e Entry) Entry {
	m := old
	if m.MediaType == "" {
		m.MediaType = e.MediaType
	}
	m.Private = addSources(slices.Clone(old.Private), e.Private)
	m.Public = addSources(slices.Clone(old.Public), e.Public)
	return m
}

func addSources(list, add []string) []string {
	for _, s := range add {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	if len(list) > MaxSources {
		list = list[len(list)-MaxSources:]
	}
	return list
}

// Content is an object's bytes as a tier holds them. Content held in a
// local file may also have a method File() (*os.File, error) that gives
// the file for sendfile; content held in memory a method Bytes() []byte
// that gives the shared, read-only bytes.
type Content interface {
	io.ReaderAt
	io.Closer
	// Size is the object's size in bytes.
	Size() int64
}

// Tier is one storage tier: content by digest, with its record. Its
// methods are safe for concurrent use. tiertest.Run is the suite every
// tier passes.
type Tier interface {
	// Stat returns dg's record, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, dg oci.Digest) (Entry, error)
	// Open returns dg's content and record, or an error wrapping
	// ErrNotFound. The caller closes the content.
	Open(ctx context.Context, dg oci.Digest) (Content, Entry, error)
	// Put stores the content r holds under e.Digest, e.Size bytes. It is
	// verified while it is read: content that is not what e names is not
	// kept and Put fails with ErrMismatch. Content already held is not
	// written again; its record becomes Merge(old, e). Put returns the
	// record now held. A tier with no room fails with ErrNoRoom; a tier
	// may also keep nothing and say so with ErrDeclined (a memory tier's
	// admission).
	Put(ctx context.Context, e Entry, r io.Reader) (Entry, error)
	// Delete forgets dg; forgetting what is not held is no error.
	Delete(ctx context.Context, dg oci.Digest) error
}

// Errors of the Tier methods.
var (
	ErrNotFound = errors.New("tier: not found")
	ErrMismatch = errors.New("tier: content does not match its digest")
	ErrNoRoom   = errors.New("tier: no room")
	ErrDeclined = errors.New("tier: declined")
	// ErrFailed wraps a failure of the tier's storage (a file system that
	// is full, read-only or failing; an object store that errs).
	ErrFailed = errors.New("tier: storage failed")
)
