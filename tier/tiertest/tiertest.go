// Package tiertest is the conformance suite of cacheyd's storage tiers:
// every tier.Tier passes Run, and a new tier (an object store, say) is
// dropped in by writing the few lines that make one for a test.
package tiertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// Options describe the tier under test.
type Options struct {
	// New returns an empty tier with room for a few MiB of objects of at
	// least MaxObject bytes each. Required.
	New func(t *testing.T) tier.Tier
	// Reopen, when set, returns the tier that New's tier becomes after a
	// clean restart on the same storage; content and records must survive.
	Reopen func(t *testing.T, old tier.Tier) tier.Tier
	// MaxObject is the largest object the tier takes. Zero means 256 KiB.
	MaxObject int
}

// Run runs the suite against the tier opts describe.
func Run(t *testing.T, opts Options) {
	if opts.MaxObject == 0 {
		opts.MaxObject = 256 << 10
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, opts Options)
	}{
		{"PutStatOpen", testPutStatOpen},
		{"Absent", testAbsent},
		{"Mismatch", testMismatch},
		{"RecordsMerge", testRecordsMerge},
		{"Delete", testDelete},
		{"Concurrent", testConcurrent},
		{"Reopen", testReopen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, opts) })
	}
}

func object(t *testing.T, n int) ([]byte, tier.Entry) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, tier.Entry{Digest: oci.FromBytes(b), Size: int64(n)}
}

func put(t *testing.T, tr tier.Tier, e tier.Entry, b []byte) tier.Entry {
	t.Helper()
	got, err := tr.Put(t.Context(), e, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put %s: %v", e.Digest.Short(), err)
	}
	return got
}

// read returns the whole content of dg as Open gives it.
func read(t *testing.T, tr tier.Tier, dg oci.Digest) ([]byte, tier.Entry) {
	t.Helper()
	c, e, err := tr.Open(t.Context(), dg)
	if err != nil {
		t.Fatalf("Open %s: %v", dg.Short(), err)
	}
	defer c.Close()
	if c.Size() != e.Size {
		t.Errorf("Open %s: content of %d bytes, record of %d", dg.Short(), c.Size(), e.Size)
	}
	b := make([]byte, c.Size())
	if _, err := c.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt %s: %v", dg.Short(), err)
	}
	return b, e
}

func testPutStatOpen(t *testing.T, opts Options) {
	tr := opts.New(t)
	for _, n := range []int{0, 1, 4 << 10, opts.MaxObject} {
		b, e := object(t, n)
		e.MediaType = "application/vnd.oci.image.manifest.v1+json"
		if got := put(t, tr, e, b); got.Digest != e.Digest || got.Size != e.Size || got.MediaType != e.MediaType {
			t.Errorf("Put of %d bytes returned %+v", n, got)
		}
		st, err := tr.Stat(t.Context(), e.Digest)
		if err != nil || st.Size != e.Size || st.MediaType != e.MediaType {
			t.Errorf("Stat of %d bytes: %+v, %v", n, st, err)
		}
		got, _ := read(t, tr, e.Digest)
		if !bytes.Equal(got, b) {
			t.Errorf("content of %d bytes differs", n)
		}
		c, _, err := tr.Open(t.Context(), e.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			window := make([]byte, 5)
			if _, err := c.ReadAt(window, int64(n/2)); err != nil || !bytes.Equal(window, b[n/2:n/2+5]) {
				t.Errorf("ReadAt in the middle: %v", err)
			}
		}
		c.Close()
	}
}

func testAbsent(t *testing.T, opts Options) {
	tr := opts.New(t)
	_, e := object(t, 10)
	if _, err := tr.Stat(t.Context(), e.Digest); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Stat of what was never put: %v, want ErrNotFound", err)
	}
	if _, _, err := tr.Open(t.Context(), e.Digest); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Open of what was never put: %v, want ErrNotFound", err)
	}
	if err := tr.Delete(t.Context(), e.Digest); err != nil {
		t.Errorf("Delete of what was never put: %v", err)
	}
}

func testMismatch(t *testing.T, opts Options) {
	tr := opts.New(t)
	b, e := object(t, 8<<10)
	bad := bytes.Clone(b)
	bad[100] ^= 1
	for name, body := range map[string][]byte{"flipped": bad, "short": b[:len(b)-1], "long": append(bytes.Clone(b), 0)} {
		if _, err := tr.Put(t.Context(), e, bytes.NewReader(body)); !errors.Is(err, tier.ErrMismatch) {
			t.Errorf("Put of %s content: %v, want ErrMismatch", name, err)
		}
		if _, err := tr.Stat(t.Context(), e.Digest); !errors.Is(err, tier.ErrNotFound) {
			t.Errorf("after a Put of %s content: Stat %v, want ErrNotFound", name, err)
		}
	}
}

func testRecordsMerge(t *testing.T, opts Options) {
	tr := opts.New(t)
	b, e := object(t, 2000)
	first := e
	first.Private = []string{"private.example/secret"}
	put(t, tr, first, b)
	second := e
	second.MediaType = "application/vnd.oci.image.index.v1+json"
	second.Public = []string{"docker.io/library/base"}
	got := put(t, tr, second, b)
	third := put(t, tr, e, b) // no sources: takes none away
	for _, rec := range []tier.Entry{got, third} {
		if !slices.Equal(rec.Private, first.Private) || !slices.Equal(rec.Public, second.Public) || rec.MediaType != second.MediaType {
			t.Errorf("merged record %+v: want the private source kept, the public one added, the media type learnt", rec)
		}
	}
	st, err := tr.Stat(t.Context(), e.Digest)
	if err != nil || !st.Marked() || len(st.Public) != 1 {
		t.Errorf("Stat after the merges: %+v, %v", st, err)
	}
	for i := range tier.MaxSources + 5 {
		more := e
		more.Private = []string{fmt.Sprintf("r.example/repo%d", i)}
		put(t, tr, more, b)
	}
	if st, _ := tr.Stat(t.Context(), e.Digest); len(st.Private) != tier.MaxSources {
		t.Errorf("%d private sources, want the bound %d", len(st.Private), tier.MaxSources)
	}
}

func testDelete(t *testing.T, opts Options) {
	tr := opts.New(t)
	b, e := object(t, 3000)
	put(t, tr, e, b)
	if err := tr.Delete(t.Context(), e.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Stat(t.Context(), e.Digest); !errors.Is(err, tier.ErrNotFound) {
		t.Errorf("Stat after Delete: %v", err)
	}
	put(t, tr, e, b) // and it can come back
	if got, _ := read(t, tr, e.Digest); !bytes.Equal(got, b) {
		t.Error("content put again after a Delete differs")
	}
}

func testConcurrent(t *testing.T, opts Options) {
	tr := opts.New(t)
	const objects, writers = 8, 4
	var wg sync.WaitGroup
	type obj struct {
		b []byte
		e tier.Entry
	}
	var objs []obj
	for range objects {
		b, e := object(t, 16<<10)
		objs = append(objs, obj{b, e})
	}
	for w := range writers {
		for i, o := range objs {
			wg.Go(func() {
				e := o.e
				e.Public = []string{fmt.Sprintf("writer%d/obj%d", w, i)}
				if _, err := tr.Put(context.Background(), e, bytes.NewReader(o.b)); err != nil {
					t.Errorf("concurrent Put: %v", err)
				}
			})
		}
	}
	wg.Wait()
	for _, o := range objs {
		got, rec := read(t, tr, o.e.Digest)
		if !bytes.Equal(got, o.b) {
			t.Errorf("%s: content differs after concurrent Puts", o.e.Digest.Short())
		}
		if len(rec.Public) != writers {
			t.Errorf("%s: %d sources after %d concurrent Puts, want every one", o.e.Digest.Short(), len(rec.Public), writers)
		}
	}
}

func testReopen(t *testing.T, opts Options) {
	if opts.Reopen == nil {
		t.Skip("the tier keeps nothing across a restart")
	}
	tr := opts.New(t)
	b, e := object(t, 12<<10)
	e.MediaType = "application/vnd.oci.image.manifest.v1+json"
	e.Private = []string{"private.example/secret"}
	put(t, tr, e, b)
	tr = opts.Reopen(t, tr)
	got, rec := read(t, tr, e.Digest)
	if !bytes.Equal(got, b) || rec.MediaType != e.MediaType || !slices.Equal(rec.Private, e.Private) {
		t.Errorf("after a restart: record %+v, content equal %v", rec, bytes.Equal(got, b))
	}
}
