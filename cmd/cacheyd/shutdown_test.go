package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestGracefulShutdown: on SIGTERM readiness turns false, and a response in
// flight (a blob whose upstream is still sending) finishes whole before
// cacheyd exits; afterwards nothing is listening.
func TestGracefulShutdown(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	data := make([]byte, 1<<20)
	rand.Read(data)
	dg := up.SeedBlob(t, "team/app", data)
	release := make(chan struct{})
	up.SetHook(registrytest.HoldAfter(up.BlobBytes(dg.String()), 64<<10, release))
	base, stop := startCacheydStoppable(t, t.TempDir(), map[string]string{up.Host(): up.URL()})
	t.Cleanup(func() { stop() })

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet,
		base+"/v2/team/app/blobs/"+dg.String()+"?ns="+url.QueryEscape(up.Host()), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	// Stops once the shutdown has finished.
	go func() { stopped <- stop() }()

	// Readiness turns false while the response is still in flight.
	for i := 0; ; i++ {
		r, err := http.Get(base + "/readyz")
		if err != nil || r.StatusCode == http.StatusServiceUnavailable {
			if r != nil {
				r.Body.Close()
			}
			break
		}
		r.Body.Close()
		if i == 1000 {
			t.Fatal("/readyz still 200 after 1000 polls during shutdown")
		}
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("in-flight response cut by shutdown: %v", err)
	}
	if !bytes.Equal(append(first, rest...), data) {
		t.Fatal("in-flight response differs")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if r, err := http.Get(base + "/healthz"); err == nil {
		r.Body.Close()
		t.Error("still serving after shutdown")
	}
}
