package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// dripping answers every GET with a blob of size bytes of which it sends the
// first sent bytes, then nothing until the request ends, as a registry
// that holds a fill slot for as long as it is let.
func dripping(size, sent int64) OriginFunc {
	return func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
		return &oci.Response{Size: size, End: size, Body: io.NopCloser(io.MultiReader(
			bytes.NewReader(make([]byte, sent)), &stall{ctx}))}, nil
	}
}

// TestAbandonedFillsGiveTheirSlotsUp: four registry names, each with as
// many dripping fills as one registry may run, take every fill slot; their
// clients leave. An honest registry's pull is then served within a tenth of
// a stall window (it takes the slot of a fill nobody reads that is below
// the stall rate), and after a stall window every fill nobody reads that
// made no progress has given its slot up.
func TestAbandonedFillsGiveTheirSlotsUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const perRegistry, names = 2, 4
		by := map[string]Origin{"docker.io": origintest.New()}
		for i := range names {
			by[fmt.Sprintf("evil%d.example", i)] = dripping(1<<20, 100)
		}
		honest := by["docker.io"].(*origintest.Origin)
		data := randomBytes(t, 32<<10)
		dg := honest.Add(data, "")
		c := newTestCache(t, &registries{by: by, calls: map[string]int{}}, func(cfg *Config) {
			cfg.MemoryBytes, cfg.MaxFills, cfg.MaxFillsPerRegistry = 0, names*perRegistry, perRegistry
			cfg.AnswerTimeout, cfg.FillStall = 5*time.Second, 10*time.Second
		})
		for i := range names {
			for j := range perRegistry {
				req := blobReq(oci.FromBytes(fmt.Appendf(nil, "layer %d", j)))
				req.Registry = fmt.Sprintf("evil%d.example", i)
				obj, err := c.Get(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				obj.Close() // the client leaves; its fill goes on
			}
		}
		synctest.Wait()
		if n := testutil.ToFloat64(c.m.FillsInFlight); n != names*perRegistry {
			t.Fatalf("%v fills in flight, want every slot taken (%d)", n, names*perRegistry)
		}

		start := time.Now()
		obj, err := c.Get(t.Context(), blobReq(dg))
		if err != nil {
			t.Fatalf("an honest pull with every slot held by abandoned fills: %v", err)
		}
		if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("honest pull: %d bytes, err %v", len(got), err)
		}
		if waited := time.Since(start); waited > time.Second {
			t.Errorf("the honest pull waited %s for a slot, want at most a tenth of the stall window", waited)
		}
		if n := testutil.ToFloat64(c.m.FillsStopped.WithLabelValues("yielded")); n != 1 {
			t.Errorf("fills that yielded their slot = %v, want 1", n)
		}

		time.Sleep(20 * time.Second) // two stall windows
		synctest.Wait()
		if n := testutil.ToFloat64(c.m.FillsStopped.WithLabelValues("unread")); n != names*perRegistry-1 {
			t.Errorf("abandoned fills stopped = %v, want %d", n, names*perRegistry-1)
		}
		if n := testutil.ToFloat64(c.m.FillsInFlight); n != 0 {
			t.Errorf("%v fills still in flight", n)
		}
	})
}

// TestStalledFillsYieldToOtherRegistries: a registry whose fills have
// readers but make no progress holds every slot; another registry's pull
// waits until a stall window shows it, then takes a stalled fill's slot.
// Fills that progress keep their slots, read or not (a client reading
// windows leaves its fill unread between two), and the waiting pull is
// answered 503 once its answer timeout passes.
func TestStalledFillsYieldToOtherRegistries(t *testing.T) {
	for _, tc := range []struct {
		name                string
		progressing, unread bool
	}{{"stalled", false, false}, {"progressing", true, false}, {"progressing unread", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const slots = 3
				hostile := dripping(1<<30, 100)
				if tc.progressing {
					hostile = func(ctx context.Context, req *oci.Request) (*oci.Response, error) {
						return &oci.Response{Size: 1 << 30, End: 1 << 30, Body: &paced{ctx: ctx, every: 100 * time.Millisecond, n: 8 << 10}}, nil
					}
				}
				honest := origintest.New()
				data := randomBytes(t, 32<<10)
				dg := honest.Add(data, "")
				c := newTestCache(t, &registries{by: map[string]Origin{"docker.io": honest, "slow.example": hostile}, calls: map[string]int{}},
					func(cfg *Config) {
						cfg.MemoryBytes, cfg.MaxFills, cfg.MaxFillsPerRegistry = 0, slots, slots
						cfg.AnswerTimeout, cfg.FillStall, cfg.FillParallel = 5*time.Second, 2*time.Second, 1
					})
				var held []*Object
				for j := range slots {
					req := blobReq(oci.FromBytes(fmt.Appendf(nil, "layer %d", j)))
					req.Registry = "slow.example"
					obj, err := c.Get(t.Context(), req)
					if err != nil {
						t.Fatal(err)
					}
					held = append(held, obj) // a client that stays
					if tc.unread {
						obj.Close()
					}
				}
				defer func() {
					for _, obj := range held {
						obj.Close()
					}
				}()
				start := time.Now()
				obj, err := c.Get(t.Context(), blobReq(dg))
				if tc.progressing {
					if e, ok := oci.AsError(err); !ok || e.Status != http.StatusServiceUnavailable {
						t.Fatalf("a pull beside progressing fills that hold every slot: %v, want 503", err)
					}
					if n := testutil.ToFloat64(c.m.FillsStopped.WithLabelValues("yielded")); n != 0 {
						t.Errorf("progressing fills yielded %v slots", n)
					}
					return
				}
				if err != nil {
					t.Fatalf("a pull beside stalled fills that hold every slot: %v", err)
				}
				if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("honest pull: %d bytes, err %v", len(got), err)
				}
				if waited := time.Since(start); waited > 4*time.Second {
					t.Errorf("the pull waited %s, want at most two stall windows", waited)
				}
				if n := testutil.ToFloat64(c.m.FillsStopped.WithLabelValues("yielded")); n != 1 {
					t.Errorf("fills that yielded their slot = %v, want 1", n)
				}
			})
		})
	}
}

// paced sends n zero bytes every interval until ctx ends.
type paced struct {
	ctx   context.Context
	every time.Duration
	n     int
	left  int
}

func (p *paced) Read(b []byte) (int, error) {
	if p.left == 0 {
		select {
		case <-time.After(p.every):
			p.left = p.n
		case <-p.ctx.Done():
			return 0, context.Cause(p.ctx)
		}
	}
	m := min(len(b), p.left)
	clear(b[:m])
	p.left -= m
	return m, nil
}

func (p *paced) Close() error { return nil }

// TestFreeSlotsGoToTheRegistryRunningFewest: a freed slot goes to a fill of
// the registry that runs the fewest, not to the one that has waited
// longest: a registry with many fills queued does not starve another.
func TestFreeSlotsGoToTheRegistryRunningFewest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		objects := map[oci.Digest][]byte{}
		var many []oci.Digest
		for i := range 5 {
			data := fmt.Appendf(nil, "a's object %d", i)
			many = append(many, oci.FromBytes(data))
			objects[oci.FromBytes(data)] = data
		}
		other := []byte("b's object")
		objects[oci.FromBytes(other)] = other
		o := newGatedOrigin(objects)
		c := newTestCache(t, o, func(cfg *Config) {
			cfg.MemoryBytes, cfg.MaxFills, cfg.MaxFillsPerRegistry, cfg.AnswerTimeout = 0, 2, 2, time.Minute
		})
		get := func(registry string, dg oci.Digest) {
			req := blobReq(dg)
			req.Registry = registry
			obj, err := c.Get(t.Context(), req)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := readAll(t, obj); err != nil {
				t.Error(err)
			}
		}
		var wg sync.WaitGroup
		for _, dg := range many { // two run, three wait
			wg.Go(func() { get("a.example", dg) })
			synctest.Wait()
		}
		wg.Go(func() { get("b.example", oci.FromBytes(other)) })
		synctest.Wait()
		for range 2 {
			<-o.started
		}
		o.releaseOne()
		synctest.Wait()
		if next := <-o.started; next != "b.example" {
			t.Errorf("the freed slot went to %s, want b.example, which ran none", next)
		}
		close(o.release)
		wg.Wait()
	})
}
