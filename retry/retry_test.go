package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(dg oci.Digest) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
}

// fetchAll fetches req through o and reads the body whole.
func fetchAll(t *testing.T, o *Origin, req *oci.Request) ([]byte, error) {
	t.Helper()
	resp, err := o.Fetch(t.Context(), req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// TestCutBodiesResume: bodies cut short are resumed with a Range from the
// bytes read, invisibly to the reader. Attempts that made progress do not
// use up the budget: five cuts get through a budget of one.
func TestCutBodiesResume(t *testing.T) {
	up := origintest.New()
	data := origintest.RandomBytes(t, 1<<20)
	dg := up.Add(data, "")
	rec := origintest.Record(origintest.Cut(up, 100<<10).Times(5))
	o := New(rec, Config{Retries: 1, Backoff: time.Millisecond})
	got, err := fetchAll(t, o, get(dg))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed body: %v", err)
	}
	want := []int64{0, 100 << 10, 200 << 10, 300 << 10, 400 << 10, 500 << 10}
	if diff := cmp.Diff(want, rec.GETOffsets()); diff != "" {
		t.Errorf("GET offsets (-want +got):\n%s", diff)
	}
}

// TestCutListingFails: a listing has no digest, so a cut body is not
// resumed (two versions of a list could be spliced): it fails after the one
// attempt; a failed request before any body is still retried.
func TestCutListingFails(t *testing.T) {
	up := origintest.New()
	body := bytes.Repeat([]byte("x"), 1000)
	up.AddListing(oci.KindTags, "", oci.ListQuery{}, origintest.Listing{Body: body, MediaType: "application/json"})
	unavailable := &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "busy"}
	cut := origintest.Cut(up, 100).Times(2)
	o := New(origintest.Fail(cut, unavailable).Only(http.MethodGet).Times(1), Config{Retries: 4, Backoff: time.Millisecond})
	req := &oci.Request{Method: http.MethodGet, Kind: oci.KindTags, Registry: "docker.io", Repository: "library/app"}
	got, err := fetchAll(t, o, req)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 100 {
		t.Fatalf("cut listing: %d bytes, %v; want 100 bytes, then the cut", len(got), err)
	}
	if n := up.Count(http.MethodGet, oci.KindTags, origintest.ListRef("", oci.ListQuery{})); n != 2 {
		t.Errorf("origin asked %d times, want 2: the failed request and the cut answer", n)
	}
}

// TestRetriesThenGivesUp: 503s, 429s and an unreachable origin are retried
// within the budget; past it, or for a registry's real answer, the error.
func TestRetriesThenGivesUp(t *testing.T) {
	unavailable := &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, Message: "busy"}
	tooMany := &oci.Error{Status: http.StatusTooManyRequests, Code: oci.CodeTooManyRequests, Message: "slow down", RetryAfterHeader: "0"}
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
			up := origintest.New()
			data := origintest.RandomBytes(t, 64<<10)
			dg := up.Add(data, "")
			failing := origintest.Fail(up, tt.err).Only(http.MethodGet).Times(tt.failures)
			got, err := fetchAll(t, New(failing, Config{Retries: tt.retries, Backoff: time.Millisecond}), get(dg))
			if (err == nil) != tt.wantOK || (err == nil && !bytes.Equal(got, data)) {
				t.Fatalf("err = %v, want ok %v", err, tt.wantOK)
			}
			if n := up.Count(http.MethodGet, oci.KindBlob, string(dg)); n != tt.wantCalls {
				t.Errorf("GETs = %d, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestHeadIsRetriedToo: a HEAD answered 503 twice is asked a third time.
func TestHeadIsRetriedToo(t *testing.T) {
	up := origintest.New()
	dg := up.Add([]byte(`{"schemaVersion":2}`), "application/vnd.oci.image.manifest.v1+json")
	failing := origintest.Fail(up, &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable}).Only(http.MethodHead).Times(2)
	req := get(dg)
	req.Method, req.Kind = http.MethodHead, oci.KindManifest
	resp, err := New(failing, Config{Backoff: time.Millisecond}).Fetch(t.Context(), req)
	if err != nil || resp.Digest != dg || resp.Body != nil {
		t.Fatalf("HEAD through two 503s: %v", err)
	}
	if n := up.Count(http.MethodHead, oci.KindManifest, string(dg)); n != 3 {
		t.Errorf("HEADs = %d, want 3", n)
	}
}

// TestRetryAfterTooLongFailsFast: an origin asking to wait an hour, or
// longer than any duration, fails the fetch at once with its own answer.
func TestRetryAfterTooLongFailsFast(t *testing.T) {
	for _, after := range []string{"3600", "99999999999999999999"} {
		up := origintest.New()
		dg := up.Add(origintest.RandomBytes(t, 1000), "")
		failing := origintest.Fail(up, &oci.Error{Status: http.StatusTooManyRequests, Code: oci.CodeTooManyRequests, RetryAfterHeader: after}).Only(http.MethodGet).Times(1)
		_, err := fetchAll(t, New(failing, Config{}), get(dg))
		if e, ok := oci.AsError(err); !ok || e.Status != http.StatusTooManyRequests {
			t.Fatalf("Retry-After %s: err = %v, want the 429 passed on", after, err)
		}
		if n := up.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
			t.Errorf("Retry-After %s: GETs = %d, want 1", after, n)
		}
	}
}

// TestIdleBodyIsResumed: a body that stops sending is abandoned after the
// idle timeout and resumed from where it was.
func TestIdleBodyIsResumed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := origintest.New()
		data := origintest.RandomBytes(t, 512<<10)
		dg := up.Add(data, "")
		rec := origintest.Record(origintest.Hang(up, 200<<10).Times(1))
		start := time.Now()
		got, err := fetchAll(t, New(rec, Config{IdleTimeout: 10 * time.Second, Backoff: time.Millisecond}), get(dg))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("body after an idle attempt: %v", err)
		}
		if diff := cmp.Diff([]int64{0, 200 << 10}, rec.GETOffsets()); diff != "" {
			t.Errorf("GET offsets (-want +got):\n%s", diff)
		}
		if waited := time.Since(start); waited < 10*time.Second || waited > 11*time.Second {
			t.Errorf("resumed after %s, want the idle timeout", waited)
		}
	})
}

// TestRegistryAnswerInsideBodyIsNotRetried: a body that ends with a
// registry's answer (a manifest cut at the size limit) fails at once.
func TestRegistryAnswerInsideBodyIsNotRetried(t *testing.T) {
	up := origintest.New()
	dg := up.Add(origintest.RandomBytes(t, 64<<10), "")
	cut := origintest.CutWith(up, 1000, oci.ErrTooLarge("manifest exceeds 4 MiB")).Times(5)
	if _, err := fetchAll(t, New(cut, Config{Backoff: time.Millisecond}), get(dg)); err == nil {
		t.Fatal("fetch succeeded past a size refusal")
	}
	if n := up.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
		t.Errorf("GETs = %d, want 1 (not retried)", n)
	}
}

// TestFewBytesPerAttemptBoundAttempts: an origin that sends a few bytes of
// an object before hanging up, again and again, gets Retries+1 attempts in
// all: a few bytes are no progress that earns an attempt back.
func TestFewBytesPerAttemptBoundAttempts(t *testing.T) {
	up := origintest.New()
	dg := up.Add(origintest.RandomBytes(t, 1<<20), "")
	cut := origintest.Cut(up, 1000).Times(1000)
	got, err := fetchAll(t, New(cut, Config{Retries: 4, Backoff: time.Millisecond}), get(dg))
	if err == nil {
		t.Fatal("a fetch that never got more than 1000 bytes at a time succeeded")
	}
	if len(got) != 5000 {
		t.Errorf("read %d bytes, want the 5 × 1000 the attempts sent", len(got))
	}
	if n := up.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 5 {
		t.Errorf("GETs = %d, want Retries+1 = 5", n)
	}
}

// TestCallerCancelStops: the caller's own cancellation is never retried.
func TestCallerCancelStops(t *testing.T) {
	up := origintest.New()
	dg := up.Add(origintest.RandomBytes(t, 64<<10), "")
	hung := origintest.Hang(up, 1000).Times(10)
	ctx, cancel := context.WithCancelCause(t.Context())
	resp, err := New(hung, Config{}).Fetch(ctx, get(dg))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	gone := errors.New("client left")
	cancel(gone)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, gone) {
		t.Errorf("read after the caller left: %v", err)
	}
	if n := up.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
		t.Errorf("GETs = %d, want 1", n)
	}
}

// TestWindowsResumeWithinTheirWindow: a window (Offset and Length) or a
// suffix cut short resumes for the rest of that window only, and an origin
// that answers a resume with the whole object is read for the window alone.
func TestWindowsResumeWithinTheirWindow(t *testing.T) {
	data := origintest.RandomBytes(t, 256<<10)
	for _, tt := range []struct {
		name        string
		req         func(*oci.Request)
		want        []byte
		ignoreRange bool
	}{
		{"window", func(r *oci.Request) { r.Offset, r.Length = 1000, 100<<10 }, data[1000 : 1000+100<<10], false},
		{"suffix", func(r *oci.Request) { r.Suffix = 100 << 10 }, data[len(data)-100<<10:], false},
		{"window, resumed from an origin ignoring ranges", func(r *oci.Request) { r.Offset, r.Length = 1000, 100<<10 }, data[1000 : 1000+100<<10], true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := origintest.New()
			dg := up.Add(data, "")
			ignoring := origintest.IgnoreRange(up).Off()
			rec := origintest.Record(origintest.Cut(ignoring, 30<<10).Times(1))
			req := get(dg)
			tt.req(req)
			o := New(origintest.Func(func(ctx context.Context, r *oci.Request) (*oci.Response, error) {
				if tt.ignoreRange && len(rec.GETOffsets()) > 0 {
					ignoring.Always()
				}
				return rec.Fetch(ctx, r)
			}), Config{Backoff: time.Millisecond})
			got, err := fetchAll(t, o, req)
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("%d bytes, %v; want the window's %d", len(got), err, len(tt.want))
			}
			if n := len(rec.GETOffsets()); n != 2 {
				t.Errorf("GETs = %d, want 2 (cut, resumed)", n)
			}
		})
	}
}

// TestLongerThanAnnouncedFails: bytes past what the origin announced are no
// answer to trust.
func TestLongerThanAnnouncedFails(t *testing.T) {
	data := origintest.RandomBytes(t, 1000)
	o := New(origintest.Func(func(context.Context, *oci.Request) (*oci.Response, error) {
		return &oci.Response{Size: 1000, End: 1000, Body: io.NopCloser(bytes.NewReader(append(bytes.Clone(data), "more"...)))}, nil
	}), Config{})
	if _, err := fetchAll(t, o, get(oci.FromBytes(data))); err == nil {
		t.Error("a body longer than announced was read without error")
	}
}

// TestRelayedFailuresAreNotRetried: a failure another cacheyd relayed
// (oci.ErrRelayed) ends the fetch, whether it answers the first request or
// a resume of a cut body: that cacheyd made its attempts already, and a
// ladder of retries per hop would multiply them.
func TestRelayedFailuresAreNotRetried(t *testing.T) {
	relayed := &oci.Error{Status: http.StatusBadGateway, Code: oci.CodeUnavailable, Message: "upstream failed", Upstream: true, Err: oci.ErrRelayed}
	for _, tt := range []struct {
		name    string
		cuts    int // bodies cut before the relayed failure
		wantGET int
	}{
		{"first request", 0, 1},
		{"resume of a cut body", 1, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := origintest.New()
			dg := up.Add(origintest.RandomBytes(t, 64<<10), "")
			cut := origintest.Cut(up, 1000).Times(tt.cuts)
			calls := 0
			o := New(origintest.Func(func(ctx context.Context, r *oci.Request) (*oci.Response, error) {
				calls++
				if calls > tt.cuts {
					return nil, relayed
				}
				return cut.Fetch(ctx, r)
			}), Config{Retries: 4, Backoff: time.Millisecond})
			_, err := fetchAll(t, o, get(dg))
			if !errors.Is(err, oci.ErrRelayed) {
				t.Fatalf("err = %v, want the relayed failure", err)
			}
			if e, ok := oci.AsError(err); !ok || e.Status != http.StatusBadGateway {
				t.Errorf("err = %v, want the relayed 502 for the client", err)
			}
			if calls != tt.wantGET {
				t.Errorf("origin asked %d times, want %d", calls, tt.wantGET)
			}
		})
	}
	if oci.Retryable(fmt.Errorf("cluster: %w", relayed)) {
		t.Error("oci.Retryable(a relayed 502) = true")
	}
}

// TestAnswersSetTheirIdleTimeout: an answer's Response.Idle is its body's
// idle timeout in place of Config.IdleTimeout, and a stalled attempt's
// context ends with oci.ErrStalled as its cause, for the origin beneath to
// see.
func TestAnswersSetTheirIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := origintest.New()
		data := origintest.RandomBytes(t, 512<<10)
		dg := up.Add(data, "")
		hung := origintest.Hang(up, 200<<10).Times(1)
		var first context.Context
		o := New(origintest.Func(func(ctx context.Context, r *oci.Request) (*oci.Response, error) {
			if first == nil {
				first = ctx
			}
			resp, err := hung.Fetch(ctx, r)
			if err == nil {
				resp.Idle = 25 * time.Second
			}
			return resp, err
		}), Config{IdleTimeout: 10 * time.Second, Backoff: time.Millisecond})
		start := time.Now()
		got, err := fetchAll(t, o, get(dg))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("body after an idle attempt: %v", err)
		}
		if waited := time.Since(start); waited < 25*time.Second || waited > 26*time.Second {
			t.Errorf("resumed after %s, want the answer's 25s", waited)
		}
		if cause := context.Cause(first); !errors.Is(cause, oci.ErrStalled) {
			t.Errorf("the stalled attempt's context ended with %v, want oci.ErrStalled", cause)
		}
	})
}
