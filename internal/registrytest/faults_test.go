package registrytest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// blobBody GETs blob d of repo "app" through the registry, following the
// redirect, and returns the response with its body read as far as it goes.
func blobBody(t *testing.T, reg *Registry, d string, header http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+"/v2/app/blobs/"+d, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

var redirectModes = []struct {
	name string
	opts Options
}{
	{"direct", Options{}},
	{"redirect", Options{Redirect: true}},
}

func TestFail(t *testing.T) {
	reg := New(t, Options{})
	reg.SeedImage(t, "app", "v1", 1, 10)
	reg.SetHook(Chain(
		Fail(On("GET", KindManifest, "v1").First(2), http.StatusTooManyRequests, 1500*time.Millisecond),
		Fail(On("HEAD", KindManifest, "").First(1), http.StatusServiceUnavailable, 0),
	))
	for i, want := range []struct {
		method     string
		status     int
		retryAfter string
	}{
		{"GET", 429, "2"},
		{"HEAD", 503, ""},
		{"GET", 429, "2"},
		{"GET", 200, ""},
		{"HEAD", 200, ""},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), want.method, reg.URL()+"/v2/app/manifests/v1", nil)
		resp, err := reg.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.status || resp.Header.Get("Retry-After") != want.retryAfter {
			t.Errorf("request %d (%s): %d Retry-After %q, want %d %q", i, want.method, resp.StatusCode, resp.Header.Get("Retry-After"), want.status, want.retryAfter)
		}
		if want.status == 429 && !strings.Contains(string(body), "TOOMANYREQUESTS") {
			t.Errorf("request %d: body %q", i, body)
		}
	}
	if got := reg.Count("", KindManifest, "v1"); got != 5 {
		t.Errorf("failed requests are recorded too: Count = %d, want 5", got)
	}
}

func TestTruncate(t *testing.T) {
	for _, mode := range redirectModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := New(t, mode.opts)
			content := bytes.Repeat([]byte("abcdefghij"), 1000)
			d := reg.SeedBlob(t, "app", content).String()
			reg.SetHook(Truncate(reg.BlobBytes(d).First(2), 100))

			resp, got, err := blobBody(t, reg, d, nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) || resp.ContentLength != int64(len(content)) || !bytes.Equal(got, content[:100]) {
				t.Errorf("truncated: err %v, Content-Length %d, read %d bytes; want unexpected EOF after exactly 100 of %d", err, resp.ContentLength, len(got), len(content))
			}
			// A Range response is cut 100 bytes into the range.
			resp, got, err = blobBody(t, reg, d, http.Header{"Range": {"bytes=1000-2999"}})
			if resp.StatusCode != http.StatusPartialContent || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, content[1000:1100]) {
				t.Errorf("truncated range: %d, err %v, read %d bytes", resp.StatusCode, err, len(got))
			}
			if _, got, err = blobBody(t, reg, d, nil); err != nil || !bytes.Equal(got, content) {
				t.Errorf("after First(2): err %v, read %d bytes, want all %d", err, len(got), len(content))
			}
		})
	}
}

func TestTruncateLeavesOtherResponsesAlone(t *testing.T) {
	reg := New(t, Options{Redirect: true})
	reg.SeedImage(t, "app", "v1", 1, 10)
	// Matches the 307, a 404, a short manifest: none may be cut.
	reg.SetHook(Truncate(nil, 2))
	resp, body, err := blobBody(t, reg, "sha256:"+strings.Repeat("0", 64), nil)
	if err != nil || resp.StatusCode != 404 || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("404: %d %q %v", resp.StatusCode, body, err)
	}
	client := &http.Client{Transport: reg.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	d := reg.SeedBlob(t, "app", []byte("0123456789"))
	resp, err = client.Get(reg.URL() + "/v2/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusTemporaryRedirect || len(body) == 0 {
		t.Errorf("redirect: %d %q %v", resp.StatusCode, body, err)
	}
}

func TestCorrupt(t *testing.T) {
	for _, mode := range redirectModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := New(t, mode.opts)
			content := bytes.Repeat([]byte("abcdefghij"), 1000)
			d := reg.SeedBlob(t, "app", content).String()
			reg.SetHook(Corrupt(reg.BlobBytes(d).First(1), 5000))

			resp, got, err := blobBody(t, reg, d, nil)
			if err != nil || resp.ContentLength != int64(len(content)) || len(got) != len(content) {
				t.Fatalf("corrupt: err %v, Content-Length %d, read %d; want %d whole bytes", err, resp.ContentLength, len(got), len(content))
			}
			want := bytes.Clone(content)
			want[5000] ^= 0xff
			if !bytes.Equal(got, want) {
				t.Errorf("corrupt body differs from the content with byte 5000 flipped")
			}
			// Storage is untouched: the next download is whole.
			if _, got, err := blobBody(t, reg, d, nil); err != nil || !bytes.Equal(got, content) {
				t.Errorf("second download: err %v, equal %v", err, bytes.Equal(got, content))
			}
		})
	}
}

func TestHold(t *testing.T) {
	reg := New(t, Options{})
	reg.SeedImage(t, "app", "v1", 1, 10)
	release := make(chan struct{})
	reg.SetHook(Hold(On("GET", KindManifest, ""), release))

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	// Ends with its request: released below, or aborted when the registry
	// closes at cleanup.
	go func() {
		resp, err := reg.Client().Get(reg.URL() + "/v2/app/manifests/v1")
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	if err := reg.Wait(t.Context(), On("GET", KindManifest, "v1"), 1); err != nil {
		t.Fatal(err)
	}
	// Other requests pass while one is held.
	if resp := get(t, reg, "/v2/", ""); resp.StatusCode != 200 {
		t.Errorf("/v2/ while holding: %d", resp.StatusCode)
	}
	select {
	case r := <-done:
		t.Fatalf("held request finished early: %+v", r)
	default:
	}
	close(release)
	if r := <-done; r.err != nil || r.status != 200 {
		t.Errorf("released request: %+v", r)
	}
}

func TestHoldAfter(t *testing.T) {
	for _, mode := range redirectModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := New(t, mode.opts)
			content := bytes.Repeat([]byte("abcdefghij"), 1000)
			d := reg.SeedBlob(t, "app", content).String()
			release := make(chan struct{})
			reg.SetHook(HoldAfter(reg.BlobBytes(d), 4096, release))

			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+"/v2/app/blobs/"+d, nil)
			resp, err := reg.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			head := make([]byte, 4096)
			if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, content[:4096]) {
				t.Fatalf("first 4096 bytes while held: %v", err)
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(rest, content[4096:]) {
				t.Errorf("rest after release: %v, %d bytes", err, len(rest))
			}
		})
	}
}

func TestHeldRequestsEndWhenRegistryCloses(t *testing.T) {
	reg := New(t, Options{})
	d := reg.SeedBlob(t, "app", bytes.Repeat([]byte("x"), 10000)).String()
	never := make(chan struct{})
	reg.SetHook(Chain(Hold(On("", KindManifest, ""), never), HoldAfter(reg.BlobBytes(""), 10, never)))
	errs := make(chan error, 2)
	for _, path := range []string{"/v2/app/manifests/v1", "/v2/app/blobs/" + d} {
		// Ends when reg.Close below ends its held request.
		go func() {
			resp, err := reg.Client().Get(reg.URL() + path)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	if err := reg.Wait(t.Context(), nil, 2); err != nil {
		t.Fatal(err)
	}
	reg.Close() // must not hang on the held requests
	for range 2 {
		<-errs
	}
}

func TestCustomHookWithPass(t *testing.T) {
	reg := New(t, Options{Token: true})
	reg.SeedImage(t, "app", "v1", 1, 10)
	// A hook that answers /healthz itself and stamps every other response.
	reg.SetHook(func(w http.ResponseWriter, req *http.Request) bool {
		if req.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		w.Header().Set("X-Seen", "yes")
		Pass(w, req)
		return true
	})
	if resp := get(t, reg, "/healthz", ""); resp.StatusCode != http.StatusNoContent {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	resp := get(t, reg, "/v2/app/manifests/v1", "")
	if resp.StatusCode != 401 || resp.Header.Get("X-Seen") != "yes" {
		t.Errorf("passed request: %d X-Seen %q, want 401 yes", resp.StatusCode, resp.Header.Get("X-Seen"))
	}
	reg.SetHook(nil)
	if resp := get(t, reg, "/healthz", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/healthz without hook: %d", resp.StatusCode)
	}
}

func TestAbort(t *testing.T) {
	reg := New(t, Options{})
	reg.SeedImage(t, "app", "v1", 1, 10)
	reg.SetHook(Abort(On("GET", KindManifest, "").First(1)))
	if _, err := reg.Client().Get(reg.URL() + "/v2/app/manifests/v1"); err == nil {
		t.Fatal("aborted request succeeded")
	}
	if resp := get(t, reg, "/v2/app/manifests/v1", ""); resp.StatusCode != 200 {
		t.Errorf("second request: %d", resp.StatusCode)
	}
}

// Delay and Throttle are for benchmarks; here only the content is checked,
// never the time taken.
func TestDelayAndThrottleKeepContent(t *testing.T) {
	for _, mode := range redirectModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := New(t, mode.opts)
			content := bytes.Repeat([]byte("abcdefghij"), 2000)
			d := reg.SeedBlob(t, "app", content).String()
			reg.SetHook(Chain(Delay(nil, time.Millisecond), Throttle(reg.BlobBytes(d), 10<<20)))
			for _, c := range []struct {
				rng  string
				want []byte
			}{
				{"", content},
				{"bytes=19990-", content[19990:]},
				{"bytes=-5", content[19995:]},
			} {
				h := http.Header{}
				if c.rng != "" {
					h.Set("Range", c.rng)
				}
				_, got, err := blobBody(t, reg, d, h)
				if err != nil || !bytes.Equal(got, c.want) {
					t.Errorf("Range %q: err %v, got %d bytes, want %d", c.rng, err, len(got), len(c.want))
				}
			}
		})
	}
}
