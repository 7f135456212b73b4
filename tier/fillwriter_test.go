package tier

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/oci"
)

// TestFillResumesAfterCutBodies: bodies cut short are resumed with a Range
// from the bytes written, invisibly to the reader, and verified end to end.
// Attempts that made progress do not use up the retry budget: five cuts get
// through a budget of one.
func TestFillResumesAfterCutBodies(t *testing.T) {
	o := newFakeOrigin()
	data := randomBytes(t, 1<<20)
	dg := o.add(data, "")
	o.set(func(o *fakeOrigin) { o.cutAfter, o.cutCount = 100<<10, 5 })
	c := newTestCache(t, o, func(cfg *Config) { cfg.FillRetries = 1; cfg.RetryBackoff = time.Millisecond })

	got := fillAndWait(t, c, blobReq(dg))
	if !bytes.Equal(got, data) {
		t.Fatal("resumed body differs")
	}
	o.mu.Lock()
	offsets := append([]int64(nil), o.offsets...)
	o.mu.Unlock()
	want := []int64{0, 100 << 10, 200 << 10, 300 << 10, 400 << 10, 500 << 10}
	if diff := cmp.Diff(want, offsets); diff != "" {
		t.Errorf("GET offsets (-want +got):\n%s", diff)
	}
	if _, ok := c.disk.lookup(dg); !ok {
		t.Error("resumed fill was not committed")
	}
}

// TestFillRetriesThenGivesUp: 503s and 429s are retried within the budget;
// past it the fill fails, the reader sees the error, nothing is kept, and
// the next request starts afresh.
func TestFillRetriesThenGivesUp(t *testing.T) {
	unavailable := &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "busy"}
	tooMany := &oci.Error{Status: http.StatusTooManyRequests, Code: oci.CodeTooManyRequests, Message: "slow down", RetryAfter: "0"}
	tests := []struct {
		name      string
		err       error
		failures  int
		retries   int
		wantOK    bool
		wantCalls int
	}{
		{"503 within budget", unavailable, 2, 2, true, 3},
		{"429 with Retry-After within budget", tooMany, 1, 2, true, 2},
		{"unreachable within budget", oci.ErrUpstreamUnavailable, 2, 3, true, 3},
		{"503 past budget", unavailable, 5, 2, false, 3},
		{"404 is not retried", &oci.Error{Status: http.StatusNotFound, Code: oci.CodeBlobUnknown}, 1, 3, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newFakeOrigin()
			data := randomBytes(t, 64<<10)
			dg := o.add(data, "")
			o.set(func(o *fakeOrigin) { o.failNext, o.failCount = tt.err, tt.failures })
			c := newTestCache(t, o, func(cfg *Config) { cfg.FillRetries = tt.retries; cfg.RetryBackoff = time.Millisecond })
			obj, err := c.Get(t.Context(), blobReq(dg))
			if err == nil {
				got, rerr := readAll(t, obj)
				err = rerr
				if rerr == nil && !bytes.Equal(got, data) {
					t.Fatal("body differs")
				}
			}
			if (err == nil) != tt.wantOK {
				t.Fatalf("err = %v, want ok %v", err, tt.wantOK)
			}
			c.wg.Wait()
			if n := o.count(http.MethodGet, oci.KindBlob, string(dg)); n != tt.wantCalls {
				t.Errorf("upstream GETs = %d, want %d", n, tt.wantCalls)
			}
			if !tt.wantOK {
				if _, ok := c.disk.lookup(dg); ok {
					t.Error("failed fill left content in the cache")
				}
				assertNoFiles(t, c.cfg.Dir)
			}
		})
	}
}

// TestRetryAfterTooLongFailsFast: a registry asking to wait minutes fails
// the fill at once rather than holding every reader.
func TestRetryAfterTooLongFailsFast(t *testing.T) {
	o := newFakeOrigin()
	dg := o.add(randomBytes(t, 1000), "")
	o.set(func(o *fakeOrigin) {
		o.failNext, o.failCount = &oci.Error{Status: http.StatusTooManyRequests, Code: oci.CodeTooManyRequests, RetryAfter: "3600"}, 1
	})
	c := newTestCache(t, o, nil)
	_, err := c.Get(t.Context(), blobReq(dg))
	var e *oci.Error
	if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests {
		t.Fatalf("err = %v, want the 429 passed on", err)
	}
}

// TestHungUpstreamIsResumed: an upstream that stops sending mid-body is
// abandoned after the idle timeout and the fill resumes from where it was.
func TestHungUpstreamIsResumed(t *testing.T) {
	o := newFakeOrigin()
	data := randomBytes(t, 512<<10)
	dg := o.add(data, "")
	o.set(func(o *fakeOrigin) { o.hangAfter, o.hangCount = 200<<10, 1 })
	c := newTestCache(t, o, func(cfg *Config) {
		cfg.FillIdleTimeout = 200 * time.Millisecond
		cfg.RetryBackoff = time.Millisecond
	})
	if got := fillAndWait(t, c, blobReq(dg)); !bytes.Equal(got, data) {
		t.Fatal("body after a hung attempt differs")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	// Normally [0, 200 KiB]; a loaded machine may idle out an attempt more
	// than once, but every resume starts from bytes already written.
	if len(o.offsets) < 2 || o.offsets[0] != 0 || o.offsets[len(o.offsets)-1] < 200<<10 {
		t.Errorf("GET offsets %v, want 0 first and a resume from at least %d last", o.offsets, 200<<10)
	}
}

// TestRegistryAnswerInsideBodyIsNotRetried: a body that ends with a
// registry's answer (a manifest cut at the size limit) fails the fill at
// once instead of being resumed.
func TestRegistryAnswerInsideBodyIsNotRetried(t *testing.T) {
	o := newFakeOrigin()
	data := randomBytes(t, 64<<10)
	dg := o.add(data, "")
	o.set(func(o *fakeOrigin) {
		o.cutAfter, o.cutCount, o.cutErr = 1000, 5, oci.ErrTooLarge("manifest exceeds 4 MiB")
	})
	c := newTestCache(t, o, func(cfg *Config) { cfg.RetryBackoff = time.Millisecond })
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err == nil {
		_, err = readAll(t, obj)
	}
	if err == nil {
		t.Fatal("fill succeeded past a size refusal")
	}
	c.wg.Wait()
	if n := o.count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
		t.Errorf("upstream GETs = %d, want 1 (not retried)", n)
	}
}
