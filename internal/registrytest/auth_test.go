package registrytest

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

var privateOptions = Options{
	Users:   map[string]string{"alice": "wonderland", "bob": "builder"},
	Private: map[string][]string{"team/secret": {"alice"}},
}

// token asks reg's token endpoint for scope, with Basic credentials when
// user is not empty, and returns the status and token.
func token(t *testing.T, reg *Registry, user, pass string, scopes ...string) (int, string) {
	t.Helper()
	q := url.Values{"service": {"registrytest"}, "scope": scopes}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+"/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body.Token == "" || body.AccessToken != body.Token || body.ExpiresIn != 300 || body.IssuedAt == "" {
			t.Fatalf("token response %+v", body)
		}
	}
	return resp.StatusCode, body.Token
}

// get sends GET path with the Authorization header auth.
func get(t *testing.T, reg *Registry, path, auth string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL()+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestTokenScopes(t *testing.T) {
	opts := privateOptions
	opts.Token = true
	reg := New(t, opts)
	reg.SeedImage(t, "team/secret", "v1", 1, 10)
	reg.SeedImage(t, "team/public", "v1", 1, 10)
	reg.SeedImage(t, "other", "v1", 1, 10)

	for _, c := range []struct {
		name, user, pass, scope, path string
		tokenStatus, status           int
		challengeError                string
	}{
		{"anonymous public", "", "", "repository:team/public:pull", "/v2/team/public/manifests/v1", 200, 200, ""},
		{"anonymous private", "", "", "repository:team/secret:pull", "/v2/team/secret/manifests/v1", 200, 401, "insufficient_scope"},
		{"listed user private", "alice", "wonderland", "repository:team/secret:pull", "/v2/team/secret/manifests/v1", 200, 200, ""},
		{"unlisted user private", "bob", "builder", "repository:team/secret:pull", "/v2/team/secret/manifests/v1", 200, 401, "insufficient_scope"},
		{"wrong password", "alice", "rabbit", "repository:team/secret:pull", "", 401, 0, ""},
		{"unknown user", "eve", "x", "repository:team/public:pull", "", 401, 0, ""},
		{"token for another repo", "", "", "repository:team/public:pull", "/v2/other/manifests/v1", 200, 401, "insufficient_scope"},
		{"token opens base", "", "", "", "/v2/", 200, 200, ""},
		{"pull token cannot push", "", "", "repository:team/public:pull,push", "", 200, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var scopes []string
			if c.scope != "" {
				scopes = []string{c.scope}
			}
			status, tok := token(t, reg, c.user, c.pass, scopes...)
			if status != c.tokenStatus {
				t.Fatalf("token status %d, want %d", status, c.tokenStatus)
			}
			if c.path == "" {
				return
			}
			resp := get(t, reg, c.path, "Bearer "+tok)
			if resp.StatusCode != c.status {
				t.Fatalf("GET %s: %d, want %d", c.path, resp.StatusCode, c.status)
			}
			challenge := resp.Header.Get("WWW-Authenticate")
			if c.challengeError != "" && !strings.Contains(challenge, `error="`+c.challengeError+`"`) {
				t.Errorf("challenge %q lacks error %q", challenge, c.challengeError)
			}
		})
	}

	_, tok := token(t, reg, "", "", "repository:team/public:pull,push")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, reg.URL()+"/v2/team/public/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := reg.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := `,scope="repository:team/public:pull,push",error="insufficient_scope"`; resp.StatusCode != 401 || !strings.HasSuffix(resp.Header.Get("WWW-Authenticate"), want) {
		t.Errorf("anonymous upload: %d %q, want 401 ending %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
}

func TestExpireTokens(t *testing.T) {
	reg := New(t, Options{Token: true})
	reg.SeedImage(t, "app", "v1", 1, 10)
	_, tok := token(t, reg, "", "", "repository:app:pull")
	if resp := get(t, reg, "/v2/app/manifests/v1", "Bearer "+tok); resp.StatusCode != 200 {
		t.Fatalf("fresh token: %d", resp.StatusCode)
	}
	reg.ExpireTokens()
	resp := get(t, reg, "/v2/app/manifests/v1", "Bearer "+tok)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("expired token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestTokenOAuthPasswordGrant(t *testing.T) {
	opts := privateOptions
	opts.Token = true
	reg := New(t, opts)
	reg.SeedImage(t, "team/secret", "v1", 1, 10)
	for _, c := range []struct {
		name   string
		form   url.Values
		status int
	}{
		{"password", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}, "service": {"registrytest"}, "scope": {"repository:team/secret:pull"}}, 200},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}, "scope": {"repository:team/secret:pull"}}, 401},
		{"refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, 400},
		{"wrong service", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}, "service": {"elsewhere"}}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := reg.Client().PostForm(reg.URL()+"/token", c.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.status != 200 {
				return
			}
			var body struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if got := get(t, reg, "/v2/team/secret/manifests/v1", "Bearer "+body.AccessToken); got.StatusCode != 200 {
				t.Errorf("GET with OAuth token: %d", got.StatusCode)
			}
		})
	}
}

// statusOf returns the HTTP status of a go-containerregistry error, 0 if none.
func statusOf(err error) int {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode
	}
	return 0
}

func TestPrivatePullWithRemote(t *testing.T) {
	for _, mode := range []struct {
		name            string
		opts            Options
		refusedStranger int // status for an authenticated user not listed
	}{
		{"token", Options{Token: true}, http.StatusUnauthorized},
		{"basic", Options{Basic: true}, http.StatusForbidden},
	} {
		t.Run(mode.name, func(t *testing.T) {
			opts := mode.opts
			opts.Users, opts.Private = privateOptions.Users, privateOptions.Private
			reg := New(t, opts)
			reg.SeedImage(t, "team/secret", "v1", 2, 100)
			for _, c := range []struct {
				name   string
				auth   authn.Authenticator
				status int
			}{
				{"anonymous", nil, http.StatusUnauthorized},
				{"alice", &authn.Basic{Username: "alice", Password: "wonderland"}, 0},
				{"bob", &authn.Basic{Username: "bob", Password: "builder"}, mode.refusedStranger},
				{"wrong password", &authn.Basic{Username: "alice", Password: "x"}, http.StatusUnauthorized},
			} {
				t.Run(c.name, func(t *testing.T) {
					img, err := remote.Image(ref(t, reg, "team/secret:v1"), pullOptions(t, reg, c.auth)...)
					if c.status != 0 {
						if got := statusOf(err); got != c.status {
							t.Fatalf("got %v (status %d), want status %d", err, got, c.status)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					readAll(t, img)
				})
			}
		})
	}
}

func TestBasicChallenge(t *testing.T) {
	reg := New(t, Options{Basic: true, Users: map[string]string{"alice": "wonderland"}})
	for _, c := range []struct {
		name, auth string
		status     int
	}{
		{"none", "", 401},
		{"bearer", "Bearer abc", 401},
		{"wrong", "Basic " + basic("alice", "x"), 401},
		{"right", "Basic " + basic("alice", "wonderland"), 200},
	} {
		resp := get(t, reg, "/v2/", c.auth)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
		if c.status == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="registrytest"` {
			t.Errorf("%s: challenge %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(user, pass)
	_, cred, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	return cred
}
