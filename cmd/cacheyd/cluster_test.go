package main

import (
	"slices"
	"testing"
	"time"
)

// TestClusterFlags: --peers, --peer-refresh, --advertise and --parent (and
// their env twins) become the cluster's configuration; the advertise
// address defaults to $POD_IP with the --listen port; neither --peers nor
// --parent leaves cacheyd alone.
func TestClusterFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		peers     []string
		advertise string
		parent    string
		refresh   time.Duration
	}{
		{name: "alone"},
		{name: "static", args: []string{"--peers", "10.0.0.1:30123,10.0.0.2:30123", "--advertise", "10.0.0.2:30123"},
			peers: []string{"10.0.0.1:30123", "10.0.0.2:30123"}, advertise: "10.0.0.2:30123"},
		{name: "dns with the pod's address", args: []string{"--peers", "dns:cacheyd-peers:30123", "--peer-refresh", "2s"},
			env: map[string]string{"POD_IP": "10.1.2.3"}, peers: []string{"dns:cacheyd-peers:30123"}, advertise: "10.1.2.3:30123", refresh: 2 * time.Second},
		{name: "env twins", env: map[string]string{"CACHEYD_PEERS": "dns:p:1", "CACHEYD_ADVERTISE": "10.0.0.9:1", "CACHEYD_PARENT": "http://c:30123"},
			peers: []string{"dns:p:1"}, advertise: "10.0.0.9:1", parent: "http://c:30123"},
		{name: "parent alone", args: []string{"--parent", "http://cacheyd.cacheyd.svc:30123"}, parent: "http://cacheyd.cacheyd.svc:30123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parse(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := c.serveFlags.config()
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Cluster
			if !slices.Equal(got.Peers, tt.peers) || got.Advertise != tt.advertise || got.Parent != tt.parent || got.Refresh != tt.refresh {
				t.Errorf("cluster config %+v, want peers %v advertise %q parent %q refresh %v", got, tt.peers, tt.advertise, tt.parent, tt.refresh)
			}
			if got.Enabled() != (tt.peers != nil || tt.parent != "") {
				t.Errorf("Enabled() = %v", got.Enabled())
			}
		})
	}
}
