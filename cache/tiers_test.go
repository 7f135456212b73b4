package cache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// fillAndWait GETs dg through c, reads it whole and waits for the commit.
func fillAndWait(t *testing.T, c *Cache, req *oci.Request) []byte {
	t.Helper()
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readAll(t, obj)
	if err != nil {
		t.Fatal(err)
	}
	c.wg.Wait()
	memOf(c).Wait()
	return b
}

func TestTiersAnswerInOrder(t *testing.T) {
	o := origintest.New()
	small := randomBytes(t, 4<<10)
	large := randomBytes(t, 256<<10)
	ds, dl := o.Add(small, ""), o.Add(large, "")
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryMaxObject = 64 << 10 })
	fillAndWait(t, c, blobReq(ds))
	fillAndWait(t, c, blobReq(dl))

	tests := []struct {
		name string
		dg   oci.Digest
		want []byte
		src  Source
	}{
		{"small blob from memory", ds, small, SourceMemory},
		{"large blob from disk", dl, large, SourceDisk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := c.Get(t.Context(), blobReq(tt.dg))
			if err != nil {
				t.Fatal(err)
			}
			if obj.Source != tt.src || obj.Size != int64(len(tt.want)) || obj.MediaType != oci.BlobMediaType {
				t.Errorf("got source %v size %d type %q, want %v %d %q", obj.Source, obj.Size, obj.MediaType, tt.src, len(tt.want), oci.BlobMediaType)
			}
			got, err := readAll(t, obj)
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("body differs (err %v)", err)
			}
		})
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, ""); n != 0 {
		t.Errorf("unexpected calls %d", n)
	}
	for _, d := range []oci.Digest{ds, dl} {
		if n := o.Count(http.MethodGet, oci.KindBlob, string(d)); n != 1 {
			t.Errorf("upstream GETs of %s = %d, want 1", d.Short(), n)
		}
	}
}

func TestDiskRangeAndWholeFile(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 300<<10)
	dg := o.Add(data, "")
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0 })
	fillAndWait(t, c, blobReq(dg))

	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	r, err := obj.Body(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(*os.File); !ok {
		t.Errorf("whole disk hit body is %T, want *os.File (for sendfile)", r)
	}
	r.Close()
	obj, _ = c.Get(t.Context(), blobReq(dg))
	r, _ = obj.Body(1000, 5000)
	got := make([]byte, 6000)
	n, _ := r.Read(got)
	for n < 5000 {
		m, err := r.Read(got[n:])
		if err != nil {
			break
		}
		n += m
	}
	r.Close()
	if n != 5000 || !bytes.Equal(got[:n], data[1000:6000]) {
		t.Errorf("range read %d bytes, want 5000 matching", n)
	}
}

// TestWarmRestart: a new Cache on the same directory serves what was
// committed without asking upstream, and removes pending leftovers.
func TestWarmRestart(t *testing.T) {
	o := origintest.New()
	blob := randomBytes(t, 200<<10)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	db := o.Add(blob, "")
	dm := o.Add(manifest, "application/vnd.oci.image.manifest.v1+json")
	dir := t.TempDir()
	cfg1 := Config{Dir: dir, Logger: quietLogger()}
	c1, err := New(cfg1, o, newTestTiers(t, &cfg1))
	if err != nil {
		t.Fatal(err)
	}
	fillAndWait(t, c1, blobReq(db))
	mreq := &oci.Request{Method: http.MethodGet, Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dm}}
	fillAndWait(t, c1, mreq)
	stopCleanly(c1)

	leftover := filepath.Join(dir, "pending", "fill-leftover")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2 := Config{Dir: dir, Logger: quietLogger()}
	c2, err := New(cfg2, OriginFunc(failOrigin), newTestTiers(t, &cfg2))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("pending leftover survived a restart: %v", err)
	}
	obj, err := c2.Get(t.Context(), blobReq(db))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, obj); obj.Source != SourceDisk || !bytes.Equal(got, blob) {
		t.Errorf("blob after restart: source %v, equal %v", obj.Source, bytes.Equal(got, blob))
	}
	obj, err = c2.Get(t.Context(), mreq)
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	if obj.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type after restart = %q", obj.MediaType)
	}
}

// TestEvictionKeepsDiskBudget: least recently used content goes first and
// the tier never holds more than its budget.
func TestEvictionKeepsDiskBudget(t *testing.T) {
	o := origintest.New()
	const size = 100 << 10
	var ds []oci.Digest
	for range 4 {
		ds = append(ds, o.Add(randomBytes(t, size), ""))
	}
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0; cfg.DiskBytes = 3 * size })
	fillAndWait(t, c, blobReq(ds[0]))
	fillAndWait(t, c, blobReq(ds[1]))
	fillAndWait(t, c, blobReq(ds[2]))
	// Touch 0 so that 1 is the least recently used.
	obj, _ := c.Get(t.Context(), blobReq(ds[0]))
	obj.Close()
	fillAndWait(t, c, blobReq(ds[3]))

	_, _, reserved := diskOf(c).Usage()
	if reserved != 0 {
		t.Errorf("reserved = %d after every fill ended, want 0", reserved)
	}
	used, n := diskUsage(c)
	if used > 3*size || n != 3 {
		t.Errorf("disk holds %d bytes in %d objects, budget %d", used, n, 3*size)
	}
	for i, want := range []bool{true, false, true, true} {
		_, err := os.Stat(diskOf(c).Path(ds[i]))
		if got := err == nil; got != want {
			t.Errorf("object %d on disk = %v, want %v", i, got, want)
		}
	}
}

// TestWipedWhileServing: the cache directory removed under a running cache
// heals: the next request fetches again and is committed again.
func TestWipedWhileServing(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 100<<10)
	dg := o.Add(data, "")
	c := newTestCache(t, o, func(cfg *Config) { cfg.MemoryBytes = 0 })
	fillAndWait(t, c, blobReq(dg))
	entries, _ := os.ReadDir(c.cfg.Dir)
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(c.cfg.Dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if got := fillAndWait(t, c, blobReq(dg)); !bytes.Equal(got, data) {
		t.Fatal("body after wipe differs")
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
		t.Errorf("upstream GETs = %d, want 2 (before and after the wipe)", n)
	}
	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	if obj.Source != SourceDisk {
		t.Errorf("after re-fetch: source %v, want disk", obj.Source)
	}
}

// TestHeadNeverGets: a HEAD for content no tier holds is an upstream HEAD,
// never a GET.
func TestHeadNeverGets(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 1000)
	dg := o.Add(data, "")
	c := newTestCache(t, o, nil)
	req := blobReq(dg)
	req.Method = http.MethodHead
	obj, err := c.Get(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if obj.HasBody() || obj.Size != int64(len(data)) || obj.Source != SourceUpstream {
		t.Errorf("HEAD answer: body %v size %d source %v", obj.HasBody(), obj.Size, obj.Source)
	}
	if g, h := o.Count(http.MethodGet, oci.KindBlob, string(dg)), o.Count(http.MethodHead, oci.KindBlob, string(dg)); g != 0 || h != 1 {
		t.Errorf("upstream GETs %d HEADs %d, want 0 and 1", g, h)
	}
}

// TestPrivateContentOnlyForAcceptedCredentials: content upstream refuses
// to cacheyd is fetched with the client's own credentials and cached, but
// marked: it is served from the cache only to credentials upstream accepts
// (checked with one HEAD, remembered), and never to anyone else, across a
// restart too.
func TestPrivateContentOnlyForAcceptedCredentials(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 10<<10)
	dg := o.Add(data, "")
	private := origintest.Private(o, "Bearer secret")
	dir := t.TempDir()
	c := newTestCache(t, private, func(cfg *Config) { cfg.Dir = dir })
	as := func(c *Cache, auth string) (*Object, error) {
		req := blobReq(dg)
		req.Authorization = auth
		return c.Get(t.Context(), req)
	}
	refusedWith401 := func(err error) bool {
		e, ok := oci.AsError(err)
		return ok && e.Status == http.StatusUnauthorized && e.Challenge != ""
	}

	if _, err := as(c, ""); !refusedWith401(err) {
		t.Fatalf("anonymous request to a private blob: %v, want 401 with challenge", err)
	}
	obj, err := as(c, "Bearer secret")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("credentialed fill: %v", err)
	}
	c.wg.Wait()
	memOf(c).Wait()
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
		t.Errorf("upstream GETs = %d, want 2 (refused as cacheyd, then with the credential)", n)
	}

	for _, tt := range []struct{ name, auth string }{{"anonymous", ""}, {"another credential", "Bearer other"}} {
		if _, err := as(c, tt.auth); !refusedWith401(err) {
			t.Errorf("%s after a private fill: %v, want upstream's 401", tt.name, err)
		}
	}
	heads := o.Count(http.MethodHead, oci.KindBlob, string(dg))
	for range 3 {
		obj, err := as(c, "Bearer secret")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readAll(t, obj); err != nil || !bytes.Equal(got, data) || (obj.Source != SourceMemory && obj.Source != SourceDisk) {
			t.Fatalf("accepted credential: source %v, err %v", obj.Source, err)
		}
	}
	if n := o.Count(http.MethodHead, oci.KindBlob, string(dg)) - heads; n != 0 {
		t.Errorf("accepted credential: %d more upstream HEADs, want 0 (remembered)", n)
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 2 {
		t.Errorf("upstream GETs = %d, want still 2", n)
	}

	// The mark survives a restart.
	stopCleanly(c)
	c2 := newTestCache(t, private, func(cfg *Config) { cfg.Dir = dir })
	if _, err := as(c2, ""); !refusedWith401(err) {
		t.Errorf("anonymous after restart: %v, want 401", err)
	}
	// And content that becomes public is public.
	private.Off()
	obj, err = as(c2, "")
	if err != nil {
		t.Fatalf("after the repository went public: %v", err)
	}
	obj.Close()
}

func failOrigin(_ context.Context, req *oci.Request) (*oci.Response, error) {
	return nil, fmt.Errorf("origin asked for %s: %w", req.Reference, oci.ErrUpstreamUnavailable)
}

// TestSmallDiskHitsMoveToMemory: after a restart, a small object found on
// disk is served from memory the next time.
func TestSmallDiskHitsMoveToMemory(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 4<<10)
	dg := o.Add(data, "")
	dir := t.TempDir()
	c1 := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir })
	fillAndWait(t, c1, blobReq(dg))
	stopCleanly(c1)
	c2 := newTestCache(t, o, func(cfg *Config) { cfg.Dir = dir })
	for _, want := range []Source{SourceDisk, SourceMemory} {
		obj, err := c2.Get(t.Context(), blobReq(dg))
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, obj)
		if err != nil || !bytes.Equal(got, data) || obj.Source != want {
			t.Fatalf("source %v (want %v), err %v, equal %v", obj.Source, want, err, bytes.Equal(got, data))
		}
		memOf(c2).Wait()
	}
}
