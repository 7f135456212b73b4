package upstream

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// Private repositories and cacheyd's own credentials, against the fake
// registry of integration_test.go.

// anonymousChallenge is what the registry tells a client without
// credentials that asks for req.
func anonymousChallenge(t *testing.T, reg *registrytest.Registry, req *oci.Request, authorization string) string {
	t.Helper()
	part := "/manifests/"
	if req.Kind == oci.KindBlob {
		part = "/blobs/"
	}
	hreq, err := http.NewRequestWithContext(t.Context(), req.Method, reg.URL()+"/v2/"+req.Repository+part+req.Reference.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		hreq.Header.Set("Authorization", authorization)
	}
	resp, err := reg.Client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous %s: %s, want 401", hreq.URL, resp.Status)
	}
	return resp.Header.Get("WWW-Authenticate")
}

// clientToken gets a token for user the way containerd does after a 401.
func clientToken(t *testing.T, reg *registrytest.Registry, repo, user, pass string) string {
	t.Helper()
	q := url.Values{"scope": {"repository:" + repo + ":pull"}, "service": {"registrytest"}}
	hreq, err := http.NewRequestWithContext(t.Context(), "GET", reg.URL()+"/token?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.SetBasicAuth(user, pass)
	resp, err := reg.Client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("token for %s: %s, %v", user, resp.Status, err)
	}
	return tok.Token
}

func TestPrivateRepository(t *testing.T) {
	// The CDN on another port of the registry's host name, or on another
	// host name: the client's Authorization reaches neither.
	for _, cdn := range []string{"localhost", "127.0.0.1"} {
		t.Run("CDN on "+cdn, func(t *testing.T) { testPrivateRepository(t, cdn) })
	}
}

func testPrivateRepository(t *testing.T, cdnHostname string) {
	opts := registrytest.Options{
		Token: true, Redirect: true, CDNHostname: cdnHostname,
		Users:   map[string]string{"alice": "wonderland", "bob": "builder"},
		Private: map[string][]string{"team/secret": {"alice"}},
	}
	reg, c := fakeRegistry(t, opts, Config{})
	img := seed(t, reg, "team/secret", "v1")

	t.Run("cacheyd refused: the registry's anonymous challenge comes back", func(t *testing.T) {
		for _, req := range []*oci.Request{manifestOf(img.repo, "v1"), blobOf(img.repo, img.blobs[1])} {
			_, err := c.Fetch(t.Context(), req)
			e, ok := oci.AsError(err)
			if !ok || e.Status != http.StatusUnauthorized {
				t.Fatalf("Fetch = %v, want 401", err)
			}
			if want := anonymousChallenge(t, reg, req, ""); e.Challenge != want {
				t.Errorf("Challenge = %q, want the registry's own %q", e.Challenge, want)
			}
			if len(e.Body) == 0 || e.ContentType != "application/json" {
				t.Errorf("registry's error body not kept: %q (%s)", e.Body, e.ContentType)
			}
		}
	})

	t.Run("client's Authorization forwarded, never to the CDN", func(t *testing.T) {
		reg.Reset()
		auth := "Bearer " + clientToken(t, reg, img.repo, "alice", "wonderland")
		for _, req := range []*oci.Request{manifestOf(img.repo, "v1"), blobOf(img.repo, img.blobs[0]), blobOf(img.repo, img.blobs[2])} {
			req.Authorization = auth
			want := img.manifest
			if req.Kind == oci.KindBlob {
				want = req.Reference.Digest
			}
			if err := fetchVerified(t, c, req, want); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range reg.Requests() {
			switch q.Host {
			case registrytest.HostCDN:
				if q.Authorization != "" {
					t.Errorf("CDN request carried Authorization %q", q.Authorization)
				}
			default:
				if q.Kind != registrytest.KindToken && q.Authorization != auth {
					t.Errorf("%s %s: Authorization %q, want the client's", q.Method, q.Path, q.Authorization)
				}
			}
		}
		if n := reg.Count("GET", registrytest.KindCDN, ""); n != 2 {
			t.Errorf("CDN GETs = %d, want 2", n)
		}
	})

	t.Run("client's Authorization refused: challenge passed back unaltered", func(t *testing.T) {
		auth := "Bearer " + clientToken(t, reg, img.repo, "bob", "builder")
		req := manifestOf(img.repo, "v1")
		req.Authorization = auth
		_, err := c.Fetch(t.Context(), req)
		e, ok := oci.AsError(err)
		if !ok || e.Status != http.StatusUnauthorized {
			t.Fatalf("Fetch = %v, want 401", err)
		}
		if want := anonymousChallenge(t, reg, req, auth); e.Challenge != want {
			t.Errorf("Challenge = %q, want %q", e.Challenge, want)
		}
	})

}

// credentialsFile writes a Docker config.json with user's credentials for
// registry and returns its path.
func credentialsFile(t *testing.T, registry, user, pass string) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	p := filepath.Join(t.TempDir(), "config.json")
	doc := `{"auths":{"` + registry + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOwnCredentials(t *testing.T) {
	users := map[string]string{"alice": "wonderland"}
	private := map[string][]string{"team/secret": {"alice"}}
	for _, opts := range []registrytest.Options{
		{Token: true, Redirect: true, CDNHostname: "127.0.0.1", Users: users, Private: private},
		{Basic: true, Users: users, Private: private},
	} {
		name := "token"
		if opts.Basic {
			name = "basic"
		}
		t.Run(name, func(t *testing.T) {
			reg, c := fakeRegistry(t, opts, Config{CredentialsFile: credentialsFile(t, testRegistry, "alice", "wonderland")})
			img := seed(t, reg, "team/secret", "v1")
			if err := fetchVerified(t, c, manifestOf(img.repo, "v1"), img.manifest); err != nil {
				t.Fatal(err)
			}
			for _, b := range img.blobs {
				if err := fetchVerified(t, c, blobOf(img.repo, b), b); err != nil {
					t.Fatal(err)
				}
			}
			basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))
			for _, q := range reg.Requests() {
				switch {
				case q.Host == registrytest.HostCDN && q.Authorization != "":
					t.Errorf("CDN request carried Authorization %q", q.Authorization)
				case q.Kind == registrytest.KindToken && q.Authorization != basic:
					t.Errorf("token request with Authorization %q, want alice's", q.Authorization)
				}
			}
		})
	}
	t.Run("basic, without credentials: the registry's challenge", func(t *testing.T) {
		reg, c := fakeRegistry(t, registrytest.Options{Basic: true, Users: users}, Config{})
		img := seed(t, reg, "team/app", "v1")
		_, err := c.Fetch(t.Context(), manifestOf(img.repo, "v1"))
		if e, ok := oci.AsError(err); !ok || e.Status != 401 || e.Challenge != `Basic realm="registrytest"` {
			t.Fatalf("Fetch = %v, want 401 with the Basic challenge", err)
		}
	})
}
