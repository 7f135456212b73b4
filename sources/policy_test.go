package sources_test

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cacheyd/cacheyd/metrics"
	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/retry"
	"github.com/cacheyd/cacheyd/sources"
)

// asked is what a request cost each source, and how it ended: 0 for the
// content read whole, else the status of the error.
type asked struct {
	owner, parent, registry int
	status                  int
}

// TestTheOrderOfSources: for each class of request and each failure, which
// source is asked next, with the requests each source got, reading the
// route as a fill does (with retries, resuming a failed body). A source's
// own failure (unreachable, wrong bytes) moves on and is counted by source
// and reason; an answer (a registry's 404 or 503, a failure relayed by
// another cacheyd) is the answer, and retries of it go where it came
// from. An alternate registry is asked for content by digest as cacheyd
// only (a peer's request included), after the cluster and before the
// registry; any failure of its own, a 404 included, moves on to the
// registry. In fallback mode the registry comes before the alternates,
// and only its 429 or 5xx sends the request on to them.
func TestTheOrderOfSources(t *testing.T) {
	data := []byte("the bytes of an object, from wherever they come")
	requests := []struct {
		class string
		req   oci.Request
	}{
		{"digest as cacheyd", oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: oci.FromBytes(data)}}},
		{"tag", oci.Request{Kind: oci.KindManifest, Reference: oci.Reference{Tag: "v1"}}},
		{"client credentials", oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: oci.FromBytes(data)}, Authorization: "Bearer client"}},
		{"peer's request", oci.Request{Kind: oci.KindBlob, Reference: oci.Reference{Digest: oci.FromBytes(data)}, FromPeer: true}},
		{"listing", oci.Request{Kind: oci.KindTags, Reference: oci.Reference{Tag: "list"}}},
	}
	type order struct {
		failure string
		faults  map[sources.Name]string
		owns    bool // this replica owns the key: the owner entry asks nobody
		// What each group of classes costs: content (digest, tag,
		// credentials), a peer's request, a listing.
		content, peer, listing asked
		// alt is the fault of an alternate for docker.io ("ok": none);
		// "" has no alternate. digest is then what content by digest as
		// cacheyd costs, and altAsked the alternate's requests for it and
		// for a peer's request (every other class: none).
		alt      string
		digest   asked
		altAsked [2]int
	}
	prefer := []order{
		{"none", nil, false, asked{1, 0, 0, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"owner unreachable", map[sources.Name]string{sources.Owner: "unreachable"}, false,
			asked{1, 1, 0, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"owner sends wrong bytes", map[sources.Name]string{sources.Owner: "wrong bytes"}, false,
			asked{1, 1, 0, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"this replica owns the key", nil, true, asked{0, 1, 0, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"parent unreachable", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}, false,
			asked{1, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"parent sends wrong bytes", map[sources.Name]string{sources.Parent: "wrong bytes"}, true,
			asked{0, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"registry's 404", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable", sources.Registry: "404"}, false,
			asked{1, 1, 1, 404}, asked{0, 1, 1, 404}, asked{0, 0, 1, 404}, "", asked{}, [2]int{}},
		// Retried twice, from the registry that answered: the route does
		// not go back to the sources that failed.
		{"registry's 503", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable", sources.Registry: "503"}, false,
			asked{1, 1, 3, 503}, asked{0, 1, 3, 503}, asked{0, 0, 3, 503}, "", asked{}, [2]int{}},
		{"relayed failure", map[sources.Name]string{sources.Owner: "relayed", sources.Parent: "relayed"}, false,
			asked{1, 0, 0, 502}, asked{0, 1, 0, 502}, asked{0, 0, 1, 0}, "", asked{}, [2]int{}},
		{"alternate, the cluster holds it", nil, false,
			asked{1, 0, 0, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "ok", asked{1, 0, 0, 0}, [2]int{0, 0}},
		{"cluster unreachable, alternate holds it", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}, false,
			asked{1, 1, 1, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "ok", asked{1, 1, 0, 0}, [2]int{1, 1}},
		{"alternate's 404", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}, false,
			asked{1, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "404", asked{1, 1, 1, 0}, [2]int{1, 1}},
		{"alternate's 503", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}, false,
			asked{1, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "503", asked{1, 1, 1, 0}, [2]int{1, 1}},
		{"alternate unreachable", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}, false,
			asked{1, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "unreachable", asked{1, 1, 1, 0}, [2]int{1, 1}},
		{"alternate sends wrong bytes", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}, false,
			asked{1, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "wrong bytes", asked{1, 1, 1, 0}, [2]int{1, 1}},
		{"alternate's and registry's 404", map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable", sources.Registry: "404"}, false,
			asked{1, 1, 1, 404}, asked{0, 1, 1, 404}, asked{0, 0, 1, 404}, "404", asked{1, 1, 1, 404}, [2]int{1, 1}},
	}
	// In fallback mode the registry is asked first; its 429 or 503 sends
	// content by digest as cacheyd to the alternate, and when the
	// alternate has it neither, the answer is the registry's own, retried
	// from the registry. Every other class is as in prefer mode.
	cluster := map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable"}
	with := func(fault string) map[sources.Name]string {
		return map[sources.Name]string{sources.Owner: "unreachable", sources.Parent: "unreachable", sources.Registry: fault}
	}
	fallback := []order{
		{"registry healthy", cluster, false,
			asked{1, 1, 1, 0}, asked{0, 1, 1, 0}, asked{0, 0, 1, 0}, "ok", asked{1, 1, 1, 0}, [2]int{0, 0}},
		{"the cluster holds it", nil, false,
			asked{1, 0, 0, 0}, asked{0, 1, 0, 0}, asked{0, 0, 1, 0}, "ok", asked{1, 0, 0, 0}, [2]int{0, 0}},
		{"registry's 429, alternate holds it", with("429"), false,
			asked{1, 1, 3, 429}, asked{0, 1, 1, 0}, asked{0, 0, 3, 429}, "ok", asked{1, 1, 1, 0}, [2]int{1, 1}},
		{"registry's 503, alternate holds it", with("503"), false,
			asked{1, 1, 3, 503}, asked{0, 1, 1, 0}, asked{0, 0, 3, 503}, "ok", asked{1, 1, 1, 0}, [2]int{1, 1}},
		{"registry's 429, alternate's 404", with("429"), false,
			asked{1, 1, 3, 429}, asked{0, 1, 3, 429}, asked{0, 0, 3, 429}, "404", asked{1, 1, 3, 429}, [2]int{3, 3}},
		{"registry's 404", with("404"), false,
			asked{1, 1, 1, 404}, asked{0, 1, 1, 404}, asked{0, 0, 1, 404}, "ok", asked{1, 1, 1, 404}, [2]int{0, 0}},
	}
	type row struct {
		mode sources.AlternateMode
		order
	}
	var rows []row
	for _, o := range prefer {
		rows = append(rows, row{sources.Prefer, o})
	}
	for _, o := range fallback {
		rows = append(rows, row{sources.Fallback, o})
	}
	for _, tt := range rows {
		for _, rq := range requests {
			t.Run(string(tt.mode)+"/"+tt.failure+"/"+rq.class, func(t *testing.T) {
				t.Parallel()
				member, parent, registry := &fake{data: data}, &fake{data: data}, &fake{data: data}
				fakes := map[sources.Name]*fake{sources.Owner: member, sources.Parent: parent, sources.Registry: registry}
				for name, fault := range tt.faults {
					fakes[name].set(fault)
				}
				m := metrics.New(nil)
				own := &owner{member: member, owns: tt.owns}
				set := sources.Set{Owner: own, Parent: sources.Just{parent}, Registry: registry,
					AlternateMode: tt.mode, Metrics: m, Logger: slog.New(slog.DiscardHandler)}
				alt := &fake{data: data}
				if tt.alt != "" {
					if tt.alt != "ok" {
						alt.set(tt.alt)
					}
					fakes[sources.Alternate] = alt
					set.Alternates = []sources.AlternateRegistry{{Registry: "docker.io", Fetcher: alt}}
				}
				pol := sources.New(set)
				req := rq.req
				req.Method, req.Registry, req.Repository = http.MethodGet, "docker.io", "library/app"

				rt := pol.Route(&req)
				resp, err := retry.New(rt, retry.Config{Retries: 2, Backoff: time.Millisecond}).Fetch(t.Context(), &req)
				status := answerOf(t, resp, err, data)

				want, plans, altWant := tt.content, 1, 0
				switch rq.class {
				case "digest as cacheyd":
					if tt.alt != "" {
						want, altWant = tt.digest, tt.altAsked[0]
					}
				case "peer's request":
					want, plans, altWant = tt.peer, 0, tt.altAsked[1]
				case "listing":
					want, plans = tt.listing, 0
				}
				if n := alt.count(); n != altWant {
					t.Errorf("asked the alternate %d times, want %d", n, altWant)
				}
				got := asked{member.count(), parent.count(), registry.count(), status}
				if got != want {
					t.Errorf("asked owner %d, parent %d, registry %d times, answer %d; want %d, %d, %d, %d",
						got.owner, got.parent, got.registry, got.status, want.owner, want.parent, want.registry, want.status)
				}
				// Once, when the route was decided; not at all for a class
				// whose list has no owner.
				if n := own.planned(); n != plans {
					t.Errorf("the owner planned %d times, want %d", n, plans)
				}
				// Each failure of a source in its own right is counted
				// once per request it failed, under its source.
				for name, f := range fakes {
					for fault, reason := range map[string]sources.Reason{"unreachable": sources.Unreachable, "wrong bytes": sources.Wrong, "404": sources.Missing} {
						want := 0
						if name == sources.Alternate && tt.alt == fault || fault != "404" && tt.faults[name] == fault {
							want = f.count()
						}
						if n := testutil.ToFloat64(m.SourceFailures.WithLabelValues(string(name), string(reason))); int(n) != want {
							t.Errorf("failures {%s, %s} = %v, want %d", name, reason, n, want)
						}
					}
				}
			})
		}
	}
}
