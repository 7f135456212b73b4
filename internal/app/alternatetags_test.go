package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// TestAlternateTags: with --alternate-tags, a tag is resolved at the
// alternate only while its registry fails (down, 5xx, 429) and cacheyd
// holds no answer for it; the registry is asked once for the burst all
// the same, the resolution is counted, and the images pull whole. Off (the
// default), with a registry that answers (a 404 included), or with an
// answer to serve stale, the alternate gets no request for the tag.
func TestAlternateTags(t *testing.T) {
	const clients = 4
	tag := registrytest.On(http.MethodHead, registrytest.KindManifest, "v1")
	for _, tt := range []struct {
		name     string
		on       bool
		fault    string // the registry's: "down", "503", "429", "404"
		stale    bool   // an answer kept, past its TTL, before the fault
		pulled   bool   // the pulls succeed
		heads    int    // the registry's HEADs of the tag (-1: not counted, see below)
		altTags  int    // the alternate's requests for the tag
		resolved int    // cacheyd_alternate_tags_total
	}{
		{"off, the registry down", false, "down", false, false, -1, 0, 0},
		{"off, the registry's 503", false, "503", false, false, -1, 0, 0},
		{"on, the registry down", true, "down", false, true, -1, 1, 1},
		{"on, the registry's 503", true, "503", false, true, 1, 1, 1},
		{"on, the registry's 429", true, "429", false, true, 1, 1, 1},
		{"on, an answer to serve stale", true, "503", true, true, 2, 0, 0},
		{"on, the registry up", true, "", false, true, 1, 0, 0},
		{"on, the registry's 404", true, "404", false, false, 1, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{})
			alt := registrytest.New(t, registrytest.Options{})
			seedImages(t, up, alt, 1, 2, 1)
			cfg := Defaults()
			cfg.AlternateTags = tt.on
			// The registry's failure, retried at once: a lookup that
			// fails ends before its clients stop waiting. A pull that
			// comes after it begins another: its HEADs are not counted.
			cfg.Cache.RetryBackoff = time.Millisecond
			n := clients
			if tt.stale {
				// Every pull asks the registry again: one pull, one lookup.
				cfg.Cache.TagTTL, n = 0, 1
			}
			if tt.fault == "404" {
				// A 404 is not kept: a pull that comes after the lookup
				// ended begins another. One pull, one lookup.
				n = 1
			}
			base := startWithAlternate(t, cfg, up, alt)
			if tt.stale {
				if n := pullAll(t, base, up.Host(), 1, 1); n != 0 {
					t.Fatal("the pull before the fault failed")
				}
			}
			switch tt.fault {
			case "down":
				up.Close()
			case "503":
				up.SetHook(registrytest.Fail(tag, http.StatusServiceUnavailable, 0))
			case "429":
				up.SetHook(registrytest.Fail(tag, http.StatusTooManyRequests, time.Minute))
			case "404":
				up.SetHook(registrytest.Fail(tag, http.StatusNotFound, 0))
			}

			if failed := pullAll(t, base, up.Host(), 1, n); (failed == 0) != tt.pulled {
				t.Errorf("%d of %d pulls failed; want them pulled: %v", failed, n, tt.pulled)
			}
			if n := up.Count(http.MethodHead, registrytest.KindManifest, "v1"); tt.heads >= 0 && n != tt.heads {
				t.Errorf("the registry got %d HEADs of the tag, want %d", n, tt.heads)
			}
			if n := alt.Count("", registrytest.KindManifest, "v1"); n != tt.altTags {
				t.Errorf("the alternate got %d requests for the tag, want %d", n, tt.altTags)
			}
			if n := scrape(t, base, "cacheyd_alternate_tags_total"); n != tt.resolved {
				t.Errorf("cacheyd_alternate_tags_total = %d, want %d", n, tt.resolved)
			}
		})
	}
}

// TestAlternateTagsNeverWithCredentials: a tag asked with a client's
// credentials is never resolved at an alternate, whether its registry
// refuses cacheyd (an answer) or fails, even when the alternate holds an
// image under the same name.
func TestAlternateTagsNeverWithCredentials(t *testing.T) {
	for _, fault := range []string{"", "503"} {
		t.Run("registry "+fault, func(t *testing.T) {
			up := registrytest.New(t, registrytest.Options{
				Token: true, Users: map[string]string{"alice": "pw"}, Private: map[string][]string{"team/secret": {"alice"}},
			})
			alt := registrytest.New(t, registrytest.Options{})
			img := up.SeedImage(t, "team/secret", "v1", 1, 4<<10)
			alt.WriteImage(t, "mirror/team/secret", "v1", img)
			up.Reset()
			alt.Reset()
			cfg := Defaults()
			cfg.AlternateTags, cfg.Cache.RetryBackoff = true, time.Millisecond
			base := startWithAlternate(t, cfg, up, alt)
			token := userToken(t, up, "alice", "pw", "team/secret")
			if fault == "503" {
				up.SetHook(registrytest.Fail(registrytest.On(http.MethodHead, registrytest.KindManifest, "v1"), http.StatusServiceUnavailable, 0))
			}

			req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, base+"/v2/team/secret/manifests/v1?ns="+up.Host(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[string]int{"": http.StatusOK, "503": http.StatusServiceUnavailable}[fault]; resp.StatusCode != want {
				t.Errorf("the tag with alice's token: %d, want %d", resp.StatusCode, want)
			}
			if n := len(alt.Requests()); n != 0 {
				t.Errorf("the alternate got %d requests, want none", n)
			}
			if n := scrape(t, base, "cacheyd_alternate_tags_total"); n != 0 {
				t.Errorf("cacheyd_alternate_tags_total = %d, want 0", n)
			}
		})
	}
}
