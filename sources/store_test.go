package sources_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
	"github.com/cacheyd/cacheyd/tier"
)

// bucket is an object store of the tests: it holds data (or, corrupt, a
// copy with one byte changed), fails as its fault says, and remembers the
// digests it was told it sent wrong bytes for.
type bucket struct {
	data    []byte
	corrupt bool
	fault   error // returned by every Fetch when set

	mu      sync.Mutex // guards asked and refuted
	asked   int
	refuted []oci.Digest
}

func (b *bucket) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	b.mu.Lock()
	b.asked++
	b.mu.Unlock()
	if b.fault != nil {
		return nil, b.fault
	}
	data := b.data
	if b.corrupt {
		data = bytes.Clone(data)
		data[len(data)-1] ^= 0xff
	}
	size := int64(len(data))
	start, end := req.Offset, size
	if req.Length > 0 {
		end = min(start+req.Length, size)
	}
	return &oci.Response{Digest: req.Reference.Digest, Size: size, Offset: start, End: end,
		Body: io.NopCloser(bytes.NewReader(data[start:end]))}, nil
}

func (b *bucket) Refute(dg oci.Digest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuted = append(b.refuted, dg)
}

func (b *bucket) counts() (asked int, refuted []oci.Digest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.asked, append([]oci.Digest(nil), b.refuted...)
}

// TestTheObjectStoresPlace: the object store is asked for content by
// digest as cacheyd (a peer's request included) after the key's owner and
// before the parent and the registry, and for nothing else: not a tag,
// not a listing, not a request with a client's credentials. What it does
// not hold, or cannot be read from it, moves on to the next source and is
// counted by reason.
func TestTheObjectStoresPlace(t *testing.T) {
	data := []byte("a layer the bucket holds, by its digest")
	dg := oci.FromBytes(data)
	requests := []struct {
		class string
		req   oci.Request
		store bool // the store is asked
	}{
		{"digest as cacheyd", oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: dg}}, true},
		{"manifest by digest", oci.Request{Kind: oci.KindManifest, Reference: oci.Reference{Digest: dg}}, true},
		{"peer's request", oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: dg}, FromPeer: true}, true},
		{"tag", oci.Request{Kind: oci.KindManifest, Reference: oci.Reference{Tag: "v1"}}, false},
		{"client credentials", oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: dg}, Authorization: "Bearer client"}, false},
		{"listing", oci.Request{Kind: oci.KindTags, Reference: oci.Reference{Tag: "list"}}, false},
	}
	faults := []struct {
		name   string
		fault  error
		reason string // the failure counted; "" none
	}{
		{"holds it", nil, ""},
		{"does not hold it", fmt.Errorf("s3: %s: %w", dg.Short(), tier.ErrNotFound), "missing"},
		{"down", fmt.Errorf("s3: dial: connection refused: %w", tier.ErrFailed), "unreachable"},
		{"too slow", fmt.Errorf("s3: %w: %w", tier.ErrFailed, context.DeadlineExceeded), "stalled"},
	}
	for _, rq := range requests {
		for _, f := range faults {
			for _, owns := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/owns=%v", rq.class, f.name, owns), func(t *testing.T) {
					m := metrics.New(nil)
					member, parent, registry := &fake{data: data}, &fake{data: data}, &fake{data: data}
					own := &owner{member: member, owns: owns}
					store := &bucket{data: data, fault: f.fault}
					p := sources.New(sources.Set{Owner: own, Parent: sources.Just{parent}, Registry: registry, Store: store, Metrics: m})
					req := rq.req
					resp, err := p.Route(&req).Fetch(t.Context(), &req)
					if got := answerOf(t, resp, err, data); got != 0 {
						t.Fatalf("answer %d, want the content", got)
					}
					storeAsked, _ := store.counts()
					// Who answered: the first in the class's list that
					// holds the content.
					wantMember := 0
					if !owns && !rq.req.FromPeer && !rq.req.Kind.IsListing() {
						wantMember = 1
					}
					wantStore := 0
					if rq.store && wantMember == 0 {
						wantStore = 1
					}
					wantParent, wantRegistry := 0, 0
					switch {
					case wantMember == 1, wantStore == 1 && f.fault == nil:
					case rq.req.Kind.IsListing():
						wantRegistry = 1
					default:
						wantParent = 1
					}
					if member.count() != wantMember || storeAsked != wantStore || parent.count() != wantParent || registry.count() != wantRegistry {
						t.Errorf("asked owner %d, store %d, parent %d, registry %d; want %d, %d, %d, %d",
							member.count(), storeAsked, parent.count(), registry.count(), wantMember, wantStore, wantParent, wantRegistry)
					}
					counted := testutil.ToFloat64(m.SourceFailures.WithLabelValues(string(sources.Store), f.reason))
					wantCounted := 0.0
					if f.reason != "" && wantStore == 1 {
						wantCounted = 1
					}
					if f.reason != "" && counted != wantCounted {
						t.Errorf("failures counted for the store (%s) = %v, want %v", f.reason, counted, wantCounted)
					}
				})
			}
		}
	}
}

// TestWrongBytesFromTheObjectStore: a whole object the store sends wrong
// fails the store's body as its own failure, the store is told (its next
// upload of the digest overwrites the bad object), the digest is passed
// over there from then on, and the next source's bytes are the answer. A
// fill verified only at its end (ranges) refutes the route, with the
// same effect.
func TestWrongBytesFromTheObjectStore(t *testing.T) {
	data := bytes.Repeat([]byte("a layer the bucket holds wrong "), 64)
	dg := oci.FromBytes(data)

	t.Run("whole", func(t *testing.T) {
		m := metrics.New(nil)
		registry := &fake{data: data}
		store := &bucket{data: data, corrupt: true}
		p := sources.New(sources.Set{Registry: registry, Store: store, Metrics: m})
		req := oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: dg}}
		r := p.Route(&req)
		resp, err := r.Fetch(t.Context(), &req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		var f *sources.Failure
		if !errors.As(err, &f) || f.Reason != sources.Wrong {
			t.Fatalf("reading the store's wrong bytes: %v, want its own failure (wrong)", err)
		}
		if _, refuted := store.counts(); len(refuted) != 1 || refuted[0] != dg {
			t.Fatalf("store told of %v, want [%s]", refuted, dg.Short())
		}
		// The fill's retry: the route has moved past the store.
		resp, err = r.Fetch(t.Context(), &req)
		if got := answerOf(t, resp, err, data); got != 0 {
			t.Fatalf("retry answered %d, want the registry's content", got)
		}
		// A new route for the same digest passes the store over.
		resp, err = p.Route(&req).Fetch(t.Context(), &req)
		if got := answerOf(t, resp, err, data); got != 0 {
			t.Fatalf("next fill answered %d, want the registry's content", got)
		}
		if asked, _ := store.counts(); asked != 1 || registry.count() != 2 {
			t.Errorf("store asked %d times, registry %d; want 1 and 2", asked, registry.count())
		}
		if n := testutil.ToFloat64(m.SourceFailures.WithLabelValues(string(sources.Store), string(sources.Wrong))); n != 1 {
			t.Errorf("wrong bytes counted %v times for the store, want 1", n)
		}
	})

	t.Run("ranges", func(t *testing.T) {
		registry := &fake{data: data}
		store := &bucket{data: data, corrupt: true}
		p := sources.New(sources.Set{Registry: registry, Store: store})
		req := oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: dg}}
		r := p.Route(&req)
		part := req
		part.Offset, part.Length = 0, 16
		resp, err := r.Fetch(t.Context(), &part)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.Refute(&req)
		if _, refuted := store.counts(); len(refuted) != 1 || refuted[0] != dg {
			t.Fatalf("store told of %v, want [%s]", refuted, dg.Short())
		}
		resp, err = r.Fetch(t.Context(), &req)
		if got := answerOf(t, resp, err, data); got != 0 {
			t.Fatalf("after the refutal answered %d, want the registry's content", got)
		}
		if registry.count() != 1 {
			t.Errorf("registry asked %d times, want 1", registry.count())
		}
	})
}

// TestKeptElsewhere: a route says its content is kept elsewhere when the
// key's owner (another replica, which commits it) or the object store
// answered, so that this replica's keepers are not told of it again; not
// when the parent or the registry did.
func TestKeptElsewhere(t *testing.T) {
	data := []byte("a layer, kept by whoever answered")
	dg := oci.FromBytes(data)
	missing := fmt.Errorf("s3: %w", tier.ErrNotFound)
	for _, tt := range []struct {
		name        string
		owns        bool
		ownerFault  string
		storeFault  error
		parentFault string
		want        bool
	}{
		{"the owner answers", false, "", nil, "", true},
		{"the store answers", true, "", nil, "", true},
		{"the parent answers", true, "", missing, "", false},
		{"the registry answers", true, "", missing, "unreachable", false},
		{"the owner fails, the store answers", false, "unreachable", nil, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			member, parent, registry := &fake{data: data, fault: tt.ownerFault}, &fake{data: data, fault: tt.parentFault}, &fake{data: data}
			p := sources.New(sources.Set{Owner: &owner{member: member, owns: tt.owns}, Parent: sources.Just{parent},
				Registry: registry, Store: &bucket{data: data, fault: tt.storeFault}})
			req := oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: dg}}
			r := p.Route(&req)
			resp, err := r.Fetch(t.Context(), &req)
			if got := answerOf(t, resp, err, data); got != 0 {
				t.Fatalf("answer %d, want the content", got)
			}
			if got := r.KeptElsewhere(); got != tt.want {
				t.Errorf("KeptElsewhere() = %v, want %v", got, tt.want)
			}
		})
	}
}
