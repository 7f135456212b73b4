package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestTrustIsExact: with --registry-url docker.io=http://127.0.0.1:<port>
// and --allow-realm localhost:<realm port>, no other port of 127.0.0.1 or
// localhost is reachable by a client: not as ?ns=, not as a path prefix,
// not through a redirect of the mapped upstream, and the allowed realm not
// as a registry nor as a redirect target. Each request is refused 403
// DENIED, and a listener on the realm port that nobody else named accepts
// no connection.
func TestTrustIsExact(t *testing.T) {
	bystander := registrytest.NewCountingListener(t)
	p := bystander.Port()
	blob := []byte("exact trust")
	// The refused requests ask for content never fetched, which no cache
	// could answer.
	dg := oci.FromBytes([]byte("never fetched"))
	// The mapped upstream redirects blob GETs of repository to/<where>
	// to the listener, by IP address or by localhost.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case strings.HasPrefix(r.URL.Path, "/v2/to/ip/blobs/"):
			http.Redirect(w, r, "http://127.0.0.1:"+p+"/blob", http.StatusTemporaryRedirect)
		case strings.HasPrefix(r.URL.Path, "/v2/to/localhost/blobs/"):
			http.Redirect(w, r, "http://localhost:"+p+"/blob", http.StatusTemporaryRedirect)
		default:
			w.Write(blob)
		}
	}))
	t.Cleanup(up.Close)
	upAddr := up.Listener.Addr().String()
	flags := secureFlags(t, map[string]string{"docker.io": "http://" + upAddr})
	flags.AllowRealm = []string{"localhost:" + p}
	base := mustServe(t, flags)

	// The mapped upstream works as configured.
	resp, body := get(t, http.MethodGet, base+"/v2/team/app/blobs/"+oci.FromBytes(blob).String()+"?ns=docker.io", nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(blob) {
		t.Fatalf("mapped registry: %d %s", resp.StatusCode, body)
	}
	for _, target := range []string{
		"/v2/x/manifests/latest?ns=" + url.QueryEscape("127.0.0.1:"+p), // the mapped IP, another port
		"/v2/x/blobs/" + dg.String() + "?ns=" + url.QueryEscape("127.0.0.1:"+p),
		"/v2/x/manifests/latest?ns=" + url.QueryEscape("localhost:"+p), // the allowed realm
		"/v2/x/blobs/" + dg.String() + "?ns=" + url.QueryEscape("localhost:"+p),
		"/v2/x/manifests/latest?ns=127.0.0.1",
		"/v2/x/manifests/latest?ns=" + url.QueryEscape(upAddr), // the mapped URL under another name
		"/v2/127.0.0.1:" + p + "/x/manifests/latest",
		"/v2/localhost:" + p + "/x/manifests/latest",
		"/v2/to/ip/blobs/" + dg.String() + "?ns=docker.io",        // redirect to the mapped IP, another port
		"/v2/to/localhost/blobs/" + dg.String() + "?ns=docker.io", // redirect to the allowed realm
	} {
		resp, body := get(t, http.MethodGet, base+target, nil)
		if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" {
			t.Errorf("%s: %d %s, want 403 DENIED", target, resp.StatusCode, body)
		}
		if n, err := bystander.Accepted(t.Context()); err != nil || n != 0 {
			t.Fatalf("%s: the listener on %s accepted %d connections (%v), want 0", target, bystander.Addr(), n, err)
		}
	}
}
