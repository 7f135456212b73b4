package cache

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// Every client is a tenant: what one request does (the registry it names,
// the sizes that registry announces, the slots its fills hold) must not slow
// or corrupt another's pull. These tests put a hostile registry beside an
// honest one behind one cache.

// squatter answers every GET with wrong bytes of the size asked for: the
// first half at once, the rest never (until the request ends), as a
// registry that joins a popular digest's fill and drips.
type squatter struct {
	size int64
	gets chan struct{} // told of each GET
}

func (s *squatter) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Method == http.MethodHead {
		return &oci.Response{Digest: req.Reference.Digest, Size: s.size, End: s.size}, nil
	}
	s.gets <- struct{}{}
	start, end := req.Offset, s.size
	if req.Length > 0 {
		end = min(start+req.Length, s.size)
	}
	wrong := bytes.Repeat([]byte{0xee}, int(end-start))
	return &oci.Response{Digest: req.Reference.Digest, Size: s.size, Offset: start, End: end,
		Body: io.NopCloser(io.MultiReader(bytes.NewReader(wrong[:len(wrong)/2]), &stall{ctx})),
	}, nil
}

// stall sends nothing until ctx ends.
type stall struct{ ctx context.Context }

func (s *stall) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, context.Cause(s.ctx)
}

// TestNoFillSquatting: a fill is shared only by requests that name the same
// registry. A request for a popular digest at a hostile registry that
// drips wrong bytes starts a fill; a request for the same digest at its
// honest registry neither waits for that fill nor reads its bytes, whether
// it asks for the whole blob or for a window of it, and its own fill is
// committed while the hostile one still hangs.
func TestNoFillSquatting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window oci.Window // the honest client's Range; zero for a whole GET
		gets   int        // the honest registry's: the window first, then the rest
	}{
		{"whole", oci.Window{}, 1},
		{"range", oci.Window{Offset: 0, Length: 1000}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			honest := origintest.New()
			data := randomBytes(t, 64<<10)
			dg := honest.Add(data, "")
			hostile := &squatter{size: int64(len(data)), gets: make(chan struct{}, 10)}
			c := newTestCache(t, &registries{by: map[string]Origin{"docker.io": honest, "evil.example": hostile}, calls: map[string]int{}}, func(cfg *Config) { cfg.MemoryBytes = 0 })

			evil := blobReq(dg)
			evil.Registry = "evil.example"
			evilObj, err := c.Get(t.Context(), evil)
			if err != nil {
				t.Fatal(err)
			}
			defer evilObj.Close()
			<-hostile.gets

			// Bounded, so that a victim stuck behind the hostile fill fails
			// the test rather than hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			victim := blobReq(dg)
			victim.Wants = tc.window
			obj, err := c.Get(ctx, victim)
			if err != nil {
				t.Fatal(err)
			}
			if obj.Source != SourceFillNew {
				t.Errorf("the honest request's source is %v, want a fill of its own", obj.Source)
			}
			length := int64(-1)
			want := data
			if tc.window.Length > 0 {
				length, want = tc.window.Length, data[:tc.window.Length]
			}
			r, err := obj.Body(tc.window.Offset, length)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("the honest request read %d bytes (err %v), equal to its registry's: %v", len(got), err, bytes.Equal(got, want))
			}
			// Committed while the hostile fill still hangs (a whole read
			// of the honest fill ends once it is), and verified content
			// is everyone's from then on.
			whole, err := c.Get(ctx, blobReq(dg))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := readAll(t, whole); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("a whole read of the honest fill: %d bytes, err %v", len(got), err)
			}
			if n := honest.Count(http.MethodGet, oci.KindBlob, string(dg)); n != tc.gets {
				t.Errorf("honest registry GETs = %d, want %d", n, tc.gets)
			}
			again, err := c.Get(ctx, evil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := readAll(t, again); err != nil || !bytes.Equal(got, data) || again.Source != SourceDisk {
				t.Errorf("committed content to a request naming the hostile registry: source %v, err %v", again.Source, err)
			}
		})
	}
}
