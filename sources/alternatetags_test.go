package sources_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// tagSource is a registry of the tests that resolves every tag to dg with
// a HEAD, or fails as its fault says, counting what it is asked.
type tagSource struct {
	dg    oci.Digest
	fault string // "", "down", "503", "429", "404", "401"

	mu    sync.Mutex // guards asked
	asked int
}

func (s *tagSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked
}

func (s *tagSource) Fetch(context.Context, *oci.Request) (*oci.Response, error) {
	s.mu.Lock()
	s.asked++
	s.mu.Unlock()
	status := map[string]int{"503": http.StatusServiceUnavailable, "429": http.StatusTooManyRequests,
		"404": http.StatusNotFound, "401": http.StatusUnauthorized}[s.fault]
	switch {
	case s.fault == "down":
		return nil, fmt.Errorf("dial: connection refused: %w", oci.ErrUpstreamUnavailable)
	case status != 0:
		return nil, &oci.Error{Status: status, Code: "X", Message: s.fault, Upstream: true}
	}
	return &oci.Response{Digest: s.dg, MediaType: oci.ManifestMediaTypes[0], Size: 100}, nil
}

// TestAlternateTags: with Set.AlternateTags, a tag is resolved at its
// registry, once, and at the alternates only when the registry fails (429,
// 5xx, unreachable) and the request is not marked Cached; a 404 or a 401
// stands, as does the registry's failure when no alternate has the tag. A
// tag with a client's credentials, a digest and a listing never go to an
// alternate for a tag. Each tag an alternate resolves is counted once.
func TestAlternateTags(t *testing.T) {
	registryDg, altDg := oci.FromBytes([]byte("the registry's")), oci.FromBytes([]byte("the alternate's"))
	tag := oci.Request{Method: http.MethodHead, Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Tag: "v1"}}
	with := func(f func(*oci.Request)) oci.Request {
		r := tag
		f(&r)
		return r
	}
	for _, tt := range []struct {
		name     string
		off      bool // AlternateTags false
		mode     sources.AlternateMode
		req      oci.Request
		registry string    // its fault
		alts     [2]string // the alternates' faults; "-" no second one
		// want: the digest answered ("" the registry's own), the status
		// of the error otherwise (-1 unreachable), the alternates asked,
		// and the count of tags they resolved.
		dg       oci.Digest
		status   int
		asked    [2]int
		resolved int
	}{
		{"off, the registry down", true, sources.Prefer, tag, "down", [2]string{"", "-"}, "", -1, [2]int{}, 0},
		{"the registry up", false, sources.Prefer, tag, "", [2]string{"", "-"}, registryDg, 0, [2]int{}, 0},
		{"the registry down", false, sources.Prefer, tag, "down", [2]string{"", "-"}, altDg, 0, [2]int{1, 0}, 1},
		{"the registry's 503", false, sources.Prefer, tag, "503", [2]string{"", "-"}, altDg, 0, [2]int{1, 0}, 1},
		{"the registry's 429", false, sources.Prefer, tag, "429", [2]string{"", "-"}, altDg, 0, [2]int{1, 0}, 1},
		{"fallback mode, the registry's 429", false, sources.Fallback, tag, "429", [2]string{"", "-"}, altDg, 0, [2]int{1, 0}, 1},
		{"the registry's 404", false, sources.Prefer, tag, "404", [2]string{"", "-"}, "", 404, [2]int{}, 0},
		{"the registry's 401", false, sources.Prefer, tag, "401", [2]string{"", "-"}, "", 401, [2]int{}, 0},
		{"an answer cached", false, sources.Prefer, with(func(r *oci.Request) { r.Cached = true }), "503", [2]string{"", "-"}, "", 503, [2]int{}, 0},
		{"a client's credentials", false, sources.Prefer, with(func(r *oci.Request) { r.Authorization = "Bearer client" }), "503", [2]string{"", "-"}, "", 503, [2]int{}, 0},
		{"a peer's request", false, sources.Fallback, with(func(r *oci.Request) { r.FromPeer = true }), "503", [2]string{"", "-"}, altDg, 0, [2]int{1, 0}, 1},
		{"a GET, the registry down", false, sources.Prefer, with(func(r *oci.Request) { r.Method = http.MethodGet }), "down", [2]string{"", "-"}, altDg, 0, [2]int{1, 0}, 1},
		{"a listing", false, sources.Prefer, with(func(r *oci.Request) { r.Kind, r.Reference = oci.KindTags, oci.Reference{} }), "503", [2]string{"", "-"}, "", 503, [2]int{}, 0},
		{"no alternate has it", false, sources.Prefer, tag, "503", [2]string{"404", "down"}, "", 503, [2]int{1, 1}, 0},
		{"the second has it", false, sources.Prefer, tag, "down", [2]string{"404", ""}, altDg, 0, [2]int{1, 1}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			registry := &tagSource{dg: registryDg, fault: tt.registry}
			m := metrics.New(nil)
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
			set := sources.Set{Registry: registry, AlternateMode: tt.mode, AlternateTags: !tt.off, Metrics: m, Logger: log}
			var alts []*tagSource
			for i, fault := range tt.alts {
				if fault == "-" {
					continue
				}
				alts = append(alts, &tagSource{dg: altDg, fault: fault})
				set.Alternates = append(set.Alternates, sources.AlternateRegistry{Registry: "docker.io", Fetcher: alts[len(alts)-1], Name: fmt.Sprint("mirror", i)})
			}
			req := tt.req
			resp, err := sources.New(set).Route(&req).Fetch(t.Context(), &req)
			switch e, ok := oci.AsError(err); {
			case err == nil && resp.Digest != tt.dg:
				t.Errorf("answered %s, want %s", resp.Digest, tt.dg)
			case err == nil && tt.dg == "":
				t.Errorf("answered %s, want an error %d", resp.Digest, tt.status)
			case err != nil && tt.status == -1 && (ok || !errors.Is(err, oci.ErrUpstreamUnavailable)):
				t.Errorf("Fetch: %v, want the registry unreachable", err)
			case err != nil && tt.status != -1 && (!ok || e.Status != tt.status):
				t.Errorf("Fetch: %v, want the registry's %d", err, tt.status)
			}
			if n := registry.count(); n != 1 {
				t.Errorf("the registry was asked %d times, want once", n)
			}
			for i, a := range alts {
				if n := a.count(); n != tt.asked[i] {
					t.Errorf("alternate %d was asked %d times, want %d", i, n, tt.asked[i])
				}
			}
			if n := testutil.ToFloat64(m.AlternateTags.WithLabelValues("docker.io")); int(n) != tt.resolved {
				t.Errorf("cacheyd_alternate_tags_total = %v, want %d", n, tt.resolved)
			}
			// One warning for each, naming the tag and the alternate.
			var warned int
			for line := range strings.Lines(logged.String()) {
				if strings.Contains(line, "level=WARN") {
					warned++
					for _, attr := range []string{"registry=docker.io", "repository=library/app", "tag=v1", "alternate=mirror"} {
						if !strings.Contains(line, attr) {
							t.Errorf("the warning %q lacks %s", line, attr)
						}
					}
				}
			}
			if warned != tt.resolved {
				t.Errorf("%d warnings, want %d", warned, tt.resolved)
			}
		})
	} // The request with a client's credentials that a lookup's route
	// carries after cacheyd's refusal never reaches the alternate.
	registry, alt := &tagSource{dg: registryDg, fault: "503"}, &tagSource{dg: altDg}
	pol := sources.New(sources.Set{Registry: registry, AlternateTags: true, Logger: slog.New(slog.DiscardHandler),
		Alternates: []sources.AlternateRegistry{{Registry: "docker.io", Fetcher: alt}}})
	req := tag
	client := with(func(r *oci.Request) { r.Authorization = "Bearer client" })
	if _, err := pol.Route(&req).Fetch(t.Context(), &client); err == nil || alt.count() != 0 {
		t.Errorf("with a client's credentials on a tag's route: %v, the alternate asked %d times; want the registry's 503, never the alternate", err, alt.count())
	}
}
