package fill

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
)

const chunk = 64 << 10

// w is a request's window: Length bytes from Offset.
func w(off, n int64) oci.Window { return oci.Window{Offset: off, Length: n} }

// TestRequests: which requests a fill makes, exactly, and that it writes
// the object whole: the first (the starter's window, else the first chunk;
// whole for manifests and single streams), then regions of a chunk for
// the rest, a 416 answered with the whole object, and an origin that
// ignores Range read as one stream.
func TestRequests(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size        int
		parallel    int
		manifest    bool
		ignoreRange bool
		window      oci.Window
		first       oci.Window   // the first request
		all         []oci.Window // every request, sorted
	}{
		{
			name: "a manifest is one request, whole", size: 3000, parallel: 4, manifest: true,
			all: []oci.Window{{}},
		},
		{
			name: "one stream is one request, whole", size: 10 * chunk, parallel: 1,
			all: []oci.Window{{}},
		},
		{
			name: "a blob of a chunk is one request", size: chunk, parallel: 4,
			first: w(0, chunk), all: []oci.Window{w(0, chunk)},
		},
		{
			name: "a larger blob is regions of a chunk", size: 10 * chunk, parallel: 4,
			first: w(0, chunk), all: chunks(0, 10*chunk),
		},
		{
			name: "the starter's window first", size: 10 * chunk, parallel: 4, window: w(5*chunk+7, 100),
			first: w(5*chunk+7, 100),
			all: sorted(slices.Concat(chunks(0, 5*chunk+7), []oci.Window{w(5*chunk+7, 100)},
				chunks(5*chunk+107, 10*chunk))),
		},
		{
			name: "a suffix window first", size: 10 * chunk, parallel: 4, window: oci.Window{Suffix: 4096},
			first: oci.Window{Suffix: 4096},
			all:   sorted(slices.Concat(chunks(0, 10*chunk-4096), []oci.Window{{Suffix: 4096}})),
		},
		{
			name: "a window past the end: the whole object", size: 10 * chunk, parallel: 4, window: w(10*chunk+10, 5),
			first: w(10*chunk+10, 5), all: []oci.Window{{}, w(10*chunk+10, 5)},
		},
		{
			name: "an origin ignoring Range is one stream", size: 10 * chunk, parallel: 4, ignoreRange: true,
			first: w(0, chunk), all: []oci.Window{w(0, chunk)},
		},
		{
			name: "an origin ignoring Range, window first", size: 10 * chunk, parallel: 4, ignoreRange: true,
			window: w(5*chunk+7, 100), first: w(5*chunk+7, 100), all: []oci.Window{w(5*chunk+7, 100)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, tc.size)
			s.mediaType, s.ignoreRange = "application/test", tc.ignoreRange
			r := fillOnce(t, s, s.digest, Config{Chunk: chunk, Parallel: tc.parallel}, tc.manifest, tc.window, nil)
			r.wantObject(t, s.data)
			if r.res.MediaType != s.mediaType {
				t.Errorf("media type %q, want %q", r.res.MediaType, s.mediaType)
			}
			reqs := s.requests()
			if reqs[0] != tc.first {
				t.Errorf("first request %+v, want %+v", reqs[0], tc.first)
			}
			if got := sorted(reqs); !slices.Equal(got, tc.all) {
				t.Errorf("%d requests %+v, want %d: %+v", len(got), got, len(tc.all), tc.all)
			}
		})
	}
}

// chunks is the regions of a chunk from start to end.
func chunks(start, end int64) []oci.Window {
	var out []oci.Window
	for at := start; at < end; at += chunk {
		out = append(out, w(at, min(chunk, end-at)))
	}
	return out
}

// TestFailures: what the source gets wrong fails the fill with the
// registry's fault (a manifest too large with its own 413), its pending
// file aborted, after exactly the requests it took.
func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int
		parallel int
		manifest bool
		maxMan   int64
		set      func(s *source)
		requests int
		created  int
		written  int64 // on one stream
		tooLarge bool
	}{
		{
			name: "a cut body, one stream", size: 4 * chunk, parallel: 1,
			set: func(s *source) { s.cutAfter = 1000 }, requests: 1, created: 1, written: 1000,
		},
		{
			// Every request but the first is held until the fill fails:
			// the first and one of each other regular request.
			name: "a cut region", size: 4 * chunk, parallel: 4,
			set: func(s *source) {
				s.cutAfter = 1000
				s.hold, s.release = func(r oci.Request) bool { return r.Offset != 0 }, make(chan struct{})
			},
			requests: 4, created: 1,
		},
		{
			name: "another digest", size: 4 * chunk, parallel: 4,
			set: func(s *source) { s.digest = oci.FromBytes([]byte("another")) }, requests: 1,
		},
		{
			name: "wrong bytes, one stream", size: 4 * chunk, parallel: 1,
			set: func(s *source) { s.corrupt = true }, requests: 1, created: 1, written: 4 * chunk,
		},
		{
			name: "wrong bytes in regions", size: 4 * chunk, parallel: 4,
			set: func(s *source) { s.corrupt = true }, requests: 4, created: 1,
		},
		{
			name: "a manifest over the limit", size: 2000, parallel: 4, manifest: true, maxMan: 1000,
			requests: 1, tooLarge: true,
		},
		{
			name: "a manifest of unknown size over the limit", size: 2000, parallel: 4, manifest: true, maxMan: 1000,
			set: func(s *source) { s.unknownSize = true }, requests: 1, created: 1, tooLarge: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, tc.size)
			dg := s.digest
			if tc.set != nil {
				tc.set(s)
			}
			r := fillOnce(t, s, dg, Config{Chunk: chunk, Parallel: tc.parallel, MaxManifest: tc.maxMan}, tc.manifest, oci.Window{}, nil)
			if tc.tooLarge {
				if e, ok := oci.AsError(r.err); !ok || e.Status != http.StatusRequestEntityTooLarge {
					t.Errorf("fill: %v, want 413", r.err)
				}
				if errors.Is(r.err, oci.ErrUpstreamFault) {
					t.Errorf("fill: %v: a manifest too large counted as a broken transfer", r.err)
				}
				r.wantAborted(t)
			} else {
				r.wantFault(t)
			}
			if n := len(s.requests()); n != tc.requests {
				t.Errorf("%d requests, want %d: %+v", n, tc.requests, s.requests())
			}
			if r.created != tc.created {
				t.Errorf("Create called %d times, want %d", r.created, tc.created)
			}
			if tc.parallel == 1 && r.res.Written != tc.written {
				t.Errorf("%d bytes written, want %d", r.res.Written, tc.written)
			}
		})
	}
}

// TestFailedAttemptsAreTold: a source that can tell of failed attempts
// tells Job.Failed of those of the first request, and only of those.
func TestFailedAttemptsAreTold(t *testing.T) {
	s := newSource(t, 4*chunk)
	var told []error
	job := func(failed func(error)) Job {
		return Job{Config: Config{Chunk: chunk, Parallel: 4}, Source: notifying{s}, Failed: failed,
			Request: oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: s.digest}},
			Create:  func(int64, string) (Pending, error) { return &pending{}, nil }}
	}
	for _, tc := range []struct {
		name   string
		failed func(error)
		want   int
	}{
		{"told", func(err error) { told = append(told, err) }, 1},
		{"nobody to tell", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			told = nil
			j := job(tc.failed)
			j.Flight = flight.New(s.digest)
			_, err := Run(t.Context(), j)
			j.Flight.Finish(err)
			if err != nil {
				t.Fatal(err)
			}
			if len(told) != tc.want || (tc.want > 0 && !errors.Is(told[0], oci.ErrUpstreamUnavailable)) {
				t.Errorf("told %v, want %d unreachable", told, tc.want)
			}
		})
	}
}
