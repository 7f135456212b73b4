package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestRangeColdAndWarm: a Range request on a cold blob gets its window
// (206 with Content-Range), fetched first, while cacheyd fetches the rest of
// the blob around it, every byte once, the registry's redirect once; the
// same window from the warm cache is identical.
func TestRangeColdAndWarm(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	data := make([]byte, 3<<20)
	rand.Read(data)
	dg := up.SeedBlob(t, "team/app", data)
	up.Reset()
	base := startCacheyd(t, up, t.TempDir())
	u := base + "/v2/team/app/blobs/" + dg.String() + "?ns=" + url.QueryEscape(up.Host())

	for _, round := range []string{"cold", "warm"} {
		resp, body := get(t, http.MethodGet, u, map[string]string{"Range": "bytes=1000000-1000999"})
		if resp.StatusCode != http.StatusPartialContent ||
			resp.Header.Get("Content-Range") != "bytes 1000000-1000999/3145728" ||
			!bytes.Equal(body, data[1000000:1001000]) {
			t.Errorf("%s: %d %q, %d bytes", round, resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
		}
	}
	// The rest of the blob follows in the background once the window is
	// in: wait (bounded) for its two ranges to reach the CDN.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := up.Wait(ctx, registrytest.On(http.MethodGet, registrytest.KindCDN, ""), 3); err != nil {
		t.Errorf("the CDN did not see the window and the two ranges around it: %v", err)
	}
	var ranges []string
	for _, q := range up.Requests() {
		if q.Kind == registrytest.KindCDN {
			ranges = append(ranges, q.Range)
		}
	}
	if want := []string{"bytes=1000000-1000999", "bytes=0-999999", "bytes=1001000-3145727"}; !sameSet(ranges, want) || ranges[0] != want[0] {
		t.Errorf("CDN ranges %q, want the window first, then %q", ranges, want[1:])
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, ""); n != 1 {
		t.Errorf("registry blob GETs = %d, want 1 (the redirect, once)", n)
	}
	resp, _ := get(t, http.MethodGet, u, map[string]string{"Range": "bytes=4000000-"})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: %d, want 416", resp.StatusCode)
	}
}

// TestCorruptUpstreamBreaksTheResponse: wrong bytes from upstream reach the
// client as a broken response (never a complete body), nothing is cached,
// and the next request fetches again and gets the right bytes.
func TestCorruptUpstreamBreaksTheResponse(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{Redirect: true})
	data := make([]byte, 2<<20)
	rand.Read(data)
	dg := up.SeedBlob(t, "team/app", data)
	up.SetHook(registrytest.Corrupt(up.BlobBytes(dg.String()).First(1), 1<<20))
	up.Reset()
	base := startCacheyd(t, up, t.TempDir())
	u := base + "/v2/team/app/blobs/" + dg.String() + "?ns=" + url.QueryEscape(up.Host())

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("corrupt upstream: client read %d bytes without error (status %d)", len(body), resp.StatusCode)
	}
	if len(body) >= len(data) {
		t.Fatalf("corrupt upstream: client got all %d bytes", len(body))
	}
	resp, body = get(t, http.MethodGet, u, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("after a corrupt fill: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal(body, data))
	}
	if n := up.CountMatch(up.BlobBytes(dg.String())); n != 2 {
		t.Errorf("upstream blob fetches = %d, want 2 (corrupt, then good)", n)
	}
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
