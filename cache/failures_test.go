package cache

import (
	"errors"
	"net/http"
	"testing"

	"github.com/cacheyd/cacheyd/internal/origintest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestPeersGetARecentFailure: once upstream has failed a fill for good (here
// it cuts every body), another replica's request for the same content gets
// that failure at once, marked as upstream's, instead of a new fill that
// would climb the same ladder of retries again; a client's own request
// starts a new fill.
func TestPeersGetARecentFailure(t *testing.T) {
	o := origintest.New()
	data := randomBytes(t, 64<<10)
	dg := o.Add(data, "")
	cut := origintest.Cut(o, 100).Times(1000)
	c := newTestCache(t, cut, func(cfg *Config) { cfg.MemoryBytes, cfg.FillRetries, cfg.RetryBackoff = 0, 1, 1 })

	obj, err := c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, obj); err == nil {
		t.Fatal("a body upstream cuts every time was read whole")
	}
	c.wg.Wait()
	gets := o.Count(http.MethodGet, oci.KindBlob, string(dg))
	if gets != 2 {
		t.Fatalf("upstream GETs of the failed fill = %d, want FillRetries+1 = 2", gets)
	}

	peer := blobReq(dg)
	peer.FromPeer = true
	_, err = c.Get(t.Context(), peer)
	if err == nil || !errors.Is(err, oci.ErrUpstreamFault) || !oci.FromUpstream(err) {
		t.Fatalf("a peer's request after the failure: %v, want the upstream fault", err)
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != gets {
		t.Errorf("upstream GETs after a peer's request = %d, want still %d", n, gets)
	}

	cut.Off()
	obj, err = c.Get(t.Context(), blobReq(dg))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, obj); err != nil || len(got) != len(data) {
		t.Fatalf("a client's request after the failure: %d bytes, err %v; want a new fill", len(got), err)
	}
	if n := o.Count(http.MethodGet, oci.KindBlob, string(dg)); n != gets+1 {
		t.Errorf("upstream GETs after a client's request = %d, want %d", n, gets+1)
	}
}
