package main

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// testClusterSecret is the cluster secret of the tests' replicas.
const testClusterSecret = "cmd-test-cluster-secret-0123456789abcdef"

// TestClusterFlags: --peers, --peer-refresh, --advertise and --parent (and
// their env twins) become the cluster's configuration; the advertise
// address defaults to $POD_IP with the --listen port; neither --peers nor
// --parent leaves cacheyd alone.
func TestClusterFlags(t *testing.T) {
	secret := []string{"--cluster-secret", testClusterSecret}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		peers     []string
		advertise string
		parent    string
		refresh   time.Duration
		secret    string
		err       string
	}{
		{name: "alone"},
		{name: "static", args: append([]string{"--peers", "10.0.0.1:30123,10.0.0.2:30123", "--advertise", "10.0.0.2:30123"}, secret...),
			peers: []string{"10.0.0.1:30123", "10.0.0.2:30123"}, advertise: "10.0.0.2:30123", secret: testClusterSecret},
		{name: "dns with the pod's address", args: append([]string{"--peers", "dns:cacheyd-peers:30123", "--peer-refresh", "2s"}, secret...),
			env: map[string]string{"POD_IP": "10.1.2.3"}, peers: []string{"dns:cacheyd-peers:30123"}, advertise: "10.1.2.3:30123", refresh: 2 * time.Second,
			secret: testClusterSecret},
		{name: "env twins", env: map[string]string{"CACHEYD_PEERS": "dns:p:1", "CACHEYD_ADVERTISE": "10.0.0.9:1", "CACHEYD_PARENT": "http://c:30123",
			"CACHEYD_CLUSTER_SECRET": testClusterSecret},
			peers: []string{"dns:p:1"}, advertise: "10.0.0.9:1", parent: "http://c:30123", secret: testClusterSecret},
		{name: "parent alone", args: []string{"--parent", "http://cacheyd.cacheyd.svc:30123"}, parent: "http://cacheyd.cacheyd.svc:30123"},
		{name: "members on a port of their own", args: append([]string{"--peers", "dns:cacheyd-peers:30124", "--peer-listen", ":30124"}, secret...),
			env: map[string]string{"POD_IP": "10.1.2.3"}, peers: []string{"dns:cacheyd-peers:30124"}, advertise: "10.1.2.3:30124", secret: testClusterSecret},
		{name: "peers without a secret", args: []string{"--peers", "dns:p:1", "--advertise", "10.0.0.9:1"}, err: "--peers needs --cluster-secret"},
		{name: "a members' port without members", args: []string{"--peer-listen", ":30124"}, err: "--peer-listen serves the members of --peers"},
		{name: "a members' certificate without their port", args: append([]string{"--peers", "dns:p:1", "--peer-tls-cert", "c.pem", "--peer-tls-key", "k.pem"}, secret...),
			err: "--peer-tls-cert needs --peer-listen"},
		{name: "a short secret", args: []string{"--peers", "dns:p:1", "--advertise", "10.0.0.9:1", "--cluster-secret", "short"},
			err: "--cluster-secret: cluster secret shorter than 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parse(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := c.serveFlags.Config()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("config() = %v, want an error saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Cluster
			if !slices.Equal(got.Peers, tt.peers) || got.Advertise != tt.advertise || got.Parent != tt.parent || got.Refresh != tt.refresh || got.Secret != tt.secret {
				t.Errorf("cluster config %+v, want peers %v advertise %q parent %q refresh %v secret %q", got, tt.peers, tt.advertise, tt.parent, tt.refresh, tt.secret)
			}
			if got.Enabled() != (tt.peers != nil || tt.parent != "") {
				t.Errorf("Enabled() = %v", got.Enabled())
			}
		})
	}
}

// TestParentThatIsItselfIsRefused: a --parent that is this very cacheyd
// (where it listens, or its own member address) is refused at start with a
// clear error: every miss would come back to it.
func TestParentThatIsItselfIsRefused(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	for _, tt := range []struct {
		name  string
		flags func(f *serveFlags)
	}{
		{"its listen address", func(f *serveFlags) { f.Listen, f.Parent = addr, "http://"+addr }},
		{"localhost on its port", func(f *serveFlags) { f.Listen, f.Parent = ":"+port, "http://localhost:"+port }},
		{"its member address", func(f *serveFlags) {
			f.Listen, f.Peers, f.Advertise, f.ClusterSecret = addr, []string{addr, "10.0.0.2:1"}, addr, testClusterSecret
			f.Parent = "http://" + addr
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			flags := secureFlags(t, nil)
			tt.flags(&flags)
			if _, err := serveWith(t, flags); err == nil || !strings.Contains(err.Error(), "parent") || !strings.Contains(err.Error(), "is this") {
				t.Errorf("started with a parent that is itself: %v", err)
			}
		})
	}
}

// TestHopHeaderNeedsTheClusterSecret: a client that sends the hop header
// to pass as a replica is refused 403 DENIED (OCI error JSON) by a
// cacheyd with no cluster secret and by one with a secret it cannot
// prove; nothing is fetched.
func TestHopHeaderNeedsTheClusterSecret(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	dg := up.SeedBlob(t, "team/app", []byte("a layer")).String()
	up.Reset()
	alone := secureFlags(t, map[string]string{up.Host(): up.URL()})
	member := secureFlags(t, map[string]string{up.Host(): up.URL()})
	member.Listen = freeAddr(t)
	member.Peers, member.Advertise, member.ClusterSecret = []string{member.Listen}, member.Listen, testClusterSecret
	for name, flags := range map[string]serveFlags{"alone": alone, "a member": member} {
		base := mustServe(t, flags)
		resp, body := get(t, http.MethodGet, base+"/v2/team/app/blobs/"+dg+"?ns="+up.Host(), map[string]string{oci.HopHeader: "1"})
		if resp.StatusCode != http.StatusForbidden || ociCode(body) != "DENIED" || !strings.Contains(string(body), "--cluster-secret") {
			t.Errorf("%s: %d %s, want 403 DENIED naming --cluster-secret", name, resp.StatusCode, body)
		}
	}
	if n := up.Count(http.MethodGet, registrytest.KindBlob, dg); n != 0 {
		t.Errorf("upstream asked %d times for requests refused", n)
	}
}
