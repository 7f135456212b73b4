package sources_test

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// TestTheReserve: in fallback mode, a manifest GET by digest skips the
// registry while its stated budget is below the reserve (counted), and
// goes to it after the alternates only when none has the content; a blob,
// a HEAD, a budget not stated and a registry without alternates go to the
// registry first as ever.
func TestTheReserve(t *testing.T) {
	data := []byte(`{"schemaVersion":2}`)
	for _, tt := range []struct {
		name       string
		kind       oci.Kind
		method     string
		left       int64
		stated     bool
		alt        string // the alternate's fault ("ok": none); "" has none
		registry   int    // requests the registry got
		alternate  int    // requests the alternate got
		status     int    // 0: content
		passedOver int    // the reserve's count
	}{
		{"manifest below the reserve", oci.KindManifest, http.MethodGet, 2, true, "ok", 0, 1, 0, 1},
		{"manifest at the reserve", oci.KindManifest, http.MethodGet, 3, true, "ok", 1, 0, 0, 0},
		{"manifest, budget not stated", oci.KindManifest, http.MethodGet, 0, false, "ok", 1, 0, 0, 0},
		{"manifest below the reserve, alternate's 404", oci.KindManifest, http.MethodGet, 0, true, "404", 1, 1, 0, 1},
		{"manifest HEAD below the reserve", oci.KindManifest, http.MethodHead, 0, true, "ok", 1, 0, 0, 0},
		{"blob below the reserve", oci.KindBlob, http.MethodGet, 0, true, "ok", 1, 0, 0, 0},
		{"manifest below the reserve, no alternate", oci.KindManifest, http.MethodGet, 0, true, "", 1, 0, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			registry, alt := &fake{data: data}, &fake{data: data}
			m := metrics.New(nil)
			set := sources.Set{Registry: registry, AlternateMode: sources.Fallback, Reserve: 3,
				Remaining: func(reg string) (int64, bool) {
					if reg != "docker.io" {
						t.Errorf("the budget of %q asked, want docker.io", reg)
					}
					return tt.left, tt.stated
				},
				Metrics: m, Logger: slog.New(slog.DiscardHandler)}
			if tt.alt != "" {
				if tt.alt != "ok" {
					alt.set(tt.alt)
				}
				set.Alternates = []sources.AlternateRegistry{{Registry: "docker.io", Fetcher: alt}}
			}
			req := oci.Request{Kind: tt.kind, Method: tt.method, Registry: "docker.io", Repository: "library/app",
				Reference: oci.Reference{Digest: oci.FromBytes(data)}}
			resp, err := sources.New(set).Route(&req).Fetch(t.Context(), &req)
			status := answerOf(t, resp, err, data)
			if got := [3]int{registry.count(), alt.count(), status}; got != [3]int{tt.registry, tt.alternate, tt.status} {
				t.Errorf("registry %d, alternate %d, answer %d; want %d, %d, %d", got[0], got[1], got[2], tt.registry, tt.alternate, tt.status)
			}
			if n := testutil.ToFloat64(m.SourceFailures.WithLabelValues(string(sources.Registry), string(sources.Reserve))); int(n) != tt.passedOver {
				t.Errorf("passed over for the reserve %v times, want %d", n, tt.passedOver)
			}
		})
	}
}
