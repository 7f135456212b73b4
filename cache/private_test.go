package cache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// registries routes each request to the origin of the registry it names,
// and counts requests per registry.
type registries struct {
	mu     sync.Mutex // guards calls
	by     map[string]Origin
	calls  map[string]int // "registry METHOD" → count
	deflt  Origin
	leaked func(req *oci.Request) // told of every request, for assertions
}

func (r *registries) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	r.mu.Lock()
	r.calls[req.Registry+" "+req.Method]++
	o := r.by[req.Registry]
	r.mu.Unlock()
	if o == nil {
		return nil, &oci.Error{Status: http.StatusNotFound, Code: oci.CodeNameUnknown, Message: "no such registry"}
	}
	return o.Fetch(ctx, req)
}

func (r *registries) count(registry, method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[registry+" "+method]
}

// liar is a registry that answers every HEAD with 200 and the digest asked
// for, accepts any credentials, and has no bytes to give.
func liar(_ context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Method == http.MethodHead {
		return &oci.Response{Digest: req.Reference.Digest, Size: 1, MediaType: oci.BlobMediaType}, nil
	}
	return nil, &oci.Error{Status: http.StatusNotFound, Code: oci.CodeBlobUnknown, Message: "unknown"}
}

// TestPrivateContentServedOnlyForItsSources: content fetched with a
// client's credentials from a private registry is never served to a
// request for the same digest at a registry that is not its source, however
// that registry answers, with or without credentials it accepts; such a
// request is a miss of its own, fetched from the registry it names; and
// nothing any registry says clears the mark at the source.
func TestPrivateContentServedOnlyForItsSources(t *testing.T) {
	for _, kind := range []oci.Kind{oci.KindBlob, oci.KindManifest} {
		t.Run(kind.String(), func(t *testing.T) {
			private := origintest.New()
			secret := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[],"secret":"` + string(randomHex(t)) + `"}`)
			mt := ""
			if kind == oci.KindManifest {
				mt = "application/vnd.oci.image.manifest.v1+json"
			}
			dg := private.Add(secret, mt)
			public := origintest.New()
			public.Add(secret, mt)
			reg := &registries{by: map[string]Origin{
				"private.example": origintest.Private(private, "Bearer alice"), "evil.example": OriginFunc(liar), "public.example": public,
			}, calls: map[string]int{}}
			dir := t.TempDir()
			c := newTestCache(t, reg, func(cfg *Config) { cfg.Dir = dir })
			get := func(c *Cache, registry, repo, auth string) ([]byte, *Object, error) {
				req := &oci.Request{Method: http.MethodGet, Kind: kind, Registry: registry, Repository: repo,
					Reference: oci.Reference{Digest: dg}, Authorization: auth}
				obj, err := c.Get(t.Context(), req)
				if err != nil {
					return nil, nil, err
				}
				b, err := readAll(t, obj)
				c.wg.Wait()
				memOf(c).Wait()
				return b, obj, err
			}
			status := func(err error) int {
				if e, ok := oci.AsError(err); ok {
					return e.Status
				}
				return 0
			}

			// Alice pulls her private content.
			if b, _, err := get(c, "private.example", "private/secret", "Bearer alice"); err != nil || !bytes.Equal(b, secret) {
				t.Fatalf("alice's pull: %v", err)
			}
			// The liar, anonymously and with credentials it accepts, through
			// any repository: never the private bytes.
			for _, auth := range []string{"", "Bearer mallory"} {
				for _, repo := range []string{"yes/x", "private/secret"} {
					b, _, err := get(c, "evil.example", repo, auth)
					if err == nil || bytes.Equal(b, secret) {
						t.Fatalf("evil.example/%s (auth %q): %d bytes, err %v; want the liar's own 404", repo, auth, len(b), err)
					}
					if status(err) != http.StatusNotFound {
						t.Errorf("evil.example/%s (auth %q): %v, want the liar's 404", repo, auth, err)
					}
				}
			}
			if n := reg.count("evil.example", http.MethodGet); n == 0 {
				t.Error("requests for the liar were not fetched from it")
			}
			// And nothing it said cleared the mark at the source.
			for _, auth := range []string{"", "Bearer mallory"} {
				if _, _, err := get(c, "private.example", "private/secret", auth); status(err) != http.StatusUnauthorized {
					t.Errorf("private.example with auth %q after the liar: %v, want upstream's 401", auth, err)
				}
			}
			// Another repository of the private registry is not a source
			// either: it is fetched, not served from the private copy.
			gets := private.Count(http.MethodGet, kind, string(dg))
			if _, obj, err := get(c, "private.example", "other/repo", "Bearer alice"); err != nil || obj.Source == SourceDisk || obj.Source == SourceMemory {
				t.Errorf("another repository of the source registry: source %v, err %v; want its own fill", objSource(obj), err)
			}
			if n := private.Count(http.MethodGet, kind, string(dg)) - gets; n == 0 {
				t.Error("another repository of the source registry was not fetched")
			}

			// A registry that really serves the bytes publicly is fetched once,
			// then served from cache to anyone asking it.
			for range 3 {
				if b, _, err := get(c, "public.example", "lib/base", ""); err != nil || !bytes.Equal(b, secret) {
					t.Fatalf("public.example: %v", err)
				}
			}
			if n := public.Count(http.MethodGet, kind, string(dg)); n != 1 {
				t.Errorf("public.example GETs = %d, want 1 (a miss of its own, then hits)", n)
			}
			if _, _, err := get(c, "private.example", "private/secret", ""); status(err) != http.StatusUnauthorized {
				t.Errorf("anonymous at the private source after a public fill elsewhere: %v, want 401", err)
			}

			// Sources and marks survive a restart.
			stopCleanly(c)
			c2 := newTestCache(t, reg, func(cfg *Config) { cfg.Dir = dir })
			if b, _, err := get(c2, "evil.example", "yes/x", ""); err == nil || bytes.Equal(b, secret) {
				t.Errorf("evil.example after a restart: %d bytes, err %v", len(b), err)
			}
			if _, _, err := get(c2, "private.example", "private/secret", ""); status(err) != http.StatusUnauthorized {
				t.Errorf("anonymous at the source after a restart: %v, want 401", err)
			}
			if b, obj, err := get(c2, "private.example", "private/secret", "Bearer alice"); err != nil || !bytes.Equal(b, secret) || obj.Source != SourceDisk {
				t.Errorf("alice after a restart: source %v, err %v; want a disk hit", objSource(obj), err)
			}
			before := public.Count(http.MethodGet, kind, string(dg))
			if b, obj, err := get(c2, "public.example", "lib/base", ""); err != nil || !bytes.Equal(b, secret) || obj.Source != SourceDisk {
				t.Errorf("public source after a restart: source %v, err %v; want a disk hit", objSource(obj), err)
			}
			if n := public.Count(http.MethodGet, kind, string(dg)) - before; n != 0 {
				t.Errorf("public source after a restart: %d more GETs, want 0", n)
			}
		})
	}
}

// TestMarkedContentNeverInMemory: private content is served from disk only,
// so that the memory tier, which knows no sources, cannot hand it out.
func TestMarkedContentNeverInMemory(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 4<<10)
	dg := o.Add(data, "")
	c := newTestCache(t, origintest.Private(o, "Bearer alice"), nil)
	req := blobReq(dg)
	req.Authorization = "Bearer alice"
	fillAndWait(t, c, req)
	for range 2 {
		obj, err := c.Get(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		obj.Close()
		memOf(c).Wait()
		if obj.Source != SourceDisk {
			t.Fatalf("private content: source %v, want disk", obj.Source)
		}
	}
	if _, _, ok := c.mem.Get(dg); ok {
		t.Error("private content is in the memory tier")
	}
}

func objSource(o *Object) Source {
	if o == nil {
		return 0
	}
	return o.Source
}

func randomHex(t *testing.T) []byte {
	return fmt.Appendf(nil, "%x", randomBytes(t, 8))
}
