package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/cacheyd/cacheyd/oci"
)

// The fuzz targets below drive a whole Fetch, identity setup included,
// through an in-memory upstream: go-containerregistry parses the
// challenges and the token responses, so what is fuzzed is the path from
// upstream's text through that parser and cacheyd's realm guard to the
// requests cacheyd makes.

const fuzzRegistryHost = "registry.example.com"

// fakeUpstream answers every request in memory and records where each went.
type fakeUpstream struct {
	challenge string // WWW-Authenticate of the registry's 401
	tokenBody []byte // what any other host answers

	mu   sync.Mutex // guards reqs
	reqs []sentRequest
}

type sentRequest struct {
	host, authorization string
}

// RoundTrip refuses what net/http's own transport refuses to send (a bad
// scheme, a header value with control characters), then answers.
func (u *fakeUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("unsupported protocol scheme %q", req.URL.Scheme)
	}
	for k, vs := range req.Header {
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("invalid header field value for %q", k)
			}
		}
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, sentRequest{host: req.URL.Hostname(), authorization: req.Header.Get("Authorization")})
	u.mu.Unlock()
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: req, ProtoMajor: 1, ProtoMinor: 1}
	body := string(u.tokenBody)
	switch {
	case req.URL.Hostname() != fuzzRegistryHost:
	case strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") && req.URL.Path != "/v2/":
		body = string(content)
	default:
		resp.StatusCode = http.StatusUnauthorized
		resp.Header.Set("WWW-Authenticate", u.challenge)
		body = `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`
	}
	resp.Body = io.NopCloser(strings.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func (u *fakeUpstream) sent() []sentRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]sentRequest(nil), u.reqs...)
}

// fuzzFetch fetches a blob of the fake registry and checks what every
// Fetch must guarantee: the error, if any, is one the server knows how to
// answer, and nothing was sent to a host outside the registry's domain.
func fuzzFetch(t *testing.T, up *fakeUpstream) {
	c, err := New(Config{
		RegistryURLs: map[string]string{testRegistry: "https://" + fuzzRegistryHost},
		Transport:    up,
		Resolver:     fakeResolver{},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Fetch(t.Context(), blobRequest("GET", content))
	switch _, isOCI := oci.AsError(err); {
	case err == nil:
		if body := readBody(t, resp); body != string(content) {
			t.Fatalf("body %q", body)
		}
	case isOCI, errors.Is(err, oci.ErrUpstreamUnavailable):
	default:
		t.Fatalf("Fetch = %v: neither an *oci.Error nor ErrUpstreamUnavailable", err)
	}
	for _, r := range up.sent() {
		if !realmAllowed(fuzzRegistryHost, r.host) {
			t.Fatalf("challenge %q: request sent to %q", up.challenge, r.host)
		}
		if r.authorization != "" && r.host != fuzzRegistryHost {
			t.Fatalf("Authorization sent to %q", r.host)
		}
	}
}

// FuzzChallengeRealm: whatever a registry's WWW-Authenticate says, cacheyd
// asks for tokens only on the registry's host or registrable domain.
func FuzzChallengeRealm(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.example.com/token",service="registry.example.com"`,
		`Bearer realm="https://registry.example.com/token",service="x",scope="repository:team/app:pull"`,
		`Bearer realm="https://evil.example/token",service="x"`,
		`Bearer realm="https://169.254.169.254/latest/meta-data"`,
		`Bearer realm="https://example.com.evil.test/token"`,
		`Bearer realm="https://auth.example.com@evil.test/token"`,
		`Bearer realm="https://evil.test\\@auth.example.com/token"`,
		`Bearer realm=https://evil.test/token`,
		`Basic realm="registry"`,
		`Negotiate, Bearer realm="https://evil.test/t"`,
		`Bearer realm="https://auth.example.com/t", Bearer realm="https://evil.test/t"`,
		`Bearer realm="ftp://auth.example.com/token"`,
		`Bearer realm="http://[::1]:80/token"`,
		`Bearer service="x"`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, challenge string) {
		fuzzFetch(t, &fakeUpstream{challenge: challenge, tokenBody: []byte(`{"token":"tok"}`)})
	})
}

// FuzzTokenResponse: whatever a token server answers, a Fetch ends in
// content or an error the server can answer, and the token goes to the
// registry's host only.
func FuzzTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"token":"tok"}`,
		`{"access_token":"tok","expires_in":300}`,
		`{"token":"","access_token":""}`,
		`{"token":"a\r\nX-Injected: 1"}`,
		`{"token":"tok","refresh_token":"r"}`,
		`{"token":123}`,
		`[]`, `null`, ``, `{`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzFetch(t, &fakeUpstream{
			challenge: `Bearer realm="https://auth.example.com/token",service="registry.example.com"`,
			tokenBody: body,
		})
	})
}

// TestFakeUpstreamChallenges proves the fuzz harness reaches both outcomes:
// a realm of the registry's domain yields the content, another is refused
// before it is asked.
func TestFakeUpstreamChallenges(t *testing.T) {
	tests := []struct {
		challenge string
		wantErr   error
	}{
		{`Bearer realm="https://auth.example.com/token",service="s"`, nil},
		{`Bearer realm="https://evil.example/token",service="s"`, ErrRefused},
		{`Bearer realm="https://auth.example.com@evil.example/token"`, ErrRefused},
	}
	for _, tt := range tests {
		up := &fakeUpstream{challenge: tt.challenge, tokenBody: []byte(`{"token":"tok"}`)}
		c, err := New(Config{
			RegistryURLs: map[string]string{testRegistry: "https://" + fuzzRegistryHost},
			Transport:    up, Resolver: fakeResolver{},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Fetch(t.Context(), blobRequest("GET", content))
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("%s: Fetch = %v, want %v", tt.challenge, err, tt.wantErr)
			continue
		}
		if err == nil {
			readBody(t, resp)
		}
		for _, r := range up.sent() {
			if r.host == "evil.example" {
				t.Errorf("%s: a request went to %s", tt.challenge, r.host)
			}
		}
	}
}
