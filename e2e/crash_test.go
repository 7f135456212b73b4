//go:build linux

package e2e

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// kill ends cacheyd with SIGKILL, as a crashed or OOM-killed pod, and waits
// for the process to be gone. The cleanup's SIGTERM then has nothing to do.
func (c *cacheyd) kill(t *testing.T) {
	t.Helper()
	c.stopOnce.Do(func() {
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("e2e: kill cacheyd: %v", err)
		}
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Fatal("e2e: cacheyd still running 10s after SIGKILL")
		}
	})
}

// TestKilledMidFillRestartsClean: cacheyd killed with SIGKILL while a fill is
// in flight leaves a pending file behind; on restart the pending file is
// removed, what was committed is served without upstream, and the blob that
// was in flight is fetched again whole, never served partial.
func TestKilledMidFillRestartsClean(t *testing.T) {
	bin := buildCacheyd(t)
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	done, inFlight := make([]byte, 1<<20), make([]byte, 2<<20)
	rand.Read(done)
	rand.Read(inFlight)
	dDone := up.SeedBlob(t, "e2e/app", done).String()
	dFlight := up.SeedBlob(t, "e2e/app", inFlight).String()
	release := make(chan struct{})
	up.SetHook(registrytest.HoldAfter(up.BlobBytes(dFlight).First(1), 512<<10, release))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	up.Reset()
	cacheDir := t.TempDir()
	args := []string{"--cache-dir", cacheDir, "--registry-url", up.Host() + "=" + up.URL(), "--allow-registry", up.CDNHost()}
	blobURL := func(c *cacheyd, d string) string {
		return c.url() + "/v2/e2e/app/blobs/" + d + "?ns=" + url.QueryEscape(up.Host())
	}
	get := func(u string) []byte {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d, %v", u, resp.StatusCode, err)
		}
		return b
	}

	first := startCacheyd(t, bin, args...)
	if !bytes.Equal(get(blobURL(first, dDone)), done) {
		t.Fatal("first blob differs")
	}
	resp, err := http.Get(blobURL(first, dFlight))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100<<10)); err != nil {
		t.Fatalf("start of the blob in flight: %v", err)
	}
	pending, _ := os.ReadDir(filepath.Join(cacheDir, "pending"))
	if len(pending) != 1 {
		t.Fatalf("%d pending files while a fill is in flight, want 1", len(pending))
	}
	first.kill(t)
	resp.Body.Close()

	second := startCacheyd(t, bin, args...)
	if pending, _ := os.ReadDir(filepath.Join(cacheDir, "pending")); len(pending) != 0 {
		t.Errorf("pending files after restart: %d, want 0", len(pending))
	}
	if !bytes.Equal(get(blobURL(second, dDone)), done) {
		t.Fatal("committed blob differs after restart")
	}
	if n := up.CountMatch(up.BlobBytes(dDone)); n != 1 {
		t.Errorf("committed blob fetched %d times upstream, want 1 (served from disk after restart)", n)
	}
	close(release) // the killed fill's held upstream response may finish now
	if !bytes.Equal(get(blobURL(second, dFlight)), inFlight) {
		t.Fatal("blob that was in flight differs after restart")
	}
	if n := up.CountMatch(up.BlobBytes(dFlight)); n != 2 {
		t.Errorf("in-flight blob fetched %d times upstream, want 2 (killed, then whole)", n)
	}
}
