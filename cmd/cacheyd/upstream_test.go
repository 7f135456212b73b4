package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

func get(t *testing.T, method, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, u, err)
	}
	return resp, b
}

// TestPrivateRepositoryChallengePassesThrough follows what containerd does
// with a private repository behind cacheyd: the first request gets the
// registry's own challenge, the client gets a token from the registry's
// realm with its credentials, retries with Authorization, and gets the
// content, which cacheyd does not keep.
func TestPrivateRepositoryChallengePassesThrough(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{
		Token: true, Redirect: true,
		Users: map[string]string{"alice": "s3cret"}, Private: map[string][]string{"team/secret": {"alice"}},
	})
	secret := []byte("private layer bytes")
	dg := up.SeedBlob(t, "team/secret", secret)
	up.Reset()
	base := startCacheyd(t, up, t.TempDir())
	u := base + "/v2/team/secret/blobs/" + dg.String() + "?ns=" + url.QueryEscape(up.Host())

	resp, _ := get(t, http.MethodGet, u, nil)
	chal := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(chal, `realm="`+up.URL()+`/token"`) {
		t.Fatalf("anonymous: %d %q, want 401 with the registry's realm", resp.StatusCode, chal)
	}
	realm := regexp.MustCompile(`realm="([^"]+)"`).FindStringSubmatch(chal)[1]
	service := regexp.MustCompile(`service="([^"]+)"`).FindStringSubmatch(chal)[1]
	treq, _ := http.NewRequestWithContext(t.Context(), http.MethodGet,
		realm+"?service="+url.QueryEscape(service)+"&scope="+url.QueryEscape("repository:team/secret:pull"), nil)
	treq.SetBasicAuth("alice", "s3cret")
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	if err := json.NewDecoder(tresp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("token: %v", err)
	}
	tresp.Body.Close()

	auth := map[string]string{"Authorization": "Bearer " + tok.Token}
	resp, body := get(t, http.MethodGet, u, auth)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, secret) {
		t.Fatalf("with credentials: %d %q", resp.StatusCode, body)
	}
	// Not cached: an anonymous request is still refused by upstream's rules.
	resp, _ = get(t, http.MethodGet, u, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous after a credentialed pull: %d, want 401 (nothing cached)", resp.StatusCode)
	}
}

// TestUnreachableUpstreamFailsFast: a registry that refuses connections gives
// a 502 with an OCI error, so containerd moves on to its next host.
func TestUnreachableUpstreamFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	flagsBase := startCacheydWith(t, t.TempDir(), map[string]string{"localhost:1": "http://" + dead})
	for _, path := range []string{
		"/v2/app/manifests/v1?ns=localhost:1",
		"/v2/app/blobs/sha256:" + strings.Repeat("ab", 32) + "?ns=localhost:1",
	} {
		resp, body := get(t, http.MethodGet, flagsBase+path, nil)
		if resp.StatusCode != http.StatusBadGateway || !bytes.Contains(body, []byte(`"UNAVAILABLE"`)) {
			t.Errorf("GET %s: %d %s, want 502 UNAVAILABLE", path, resp.StatusCode, body)
		}
	}
}
