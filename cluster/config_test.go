package cluster

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestConfigParse(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		static    []string
		dns, port string
		self      string
		parent    string
		err       string
	}{
		{name: "alone", cfg: Config{}},
		{name: "static", cfg: Config{Peers: []string{"B:1", "10.0.0.1:30123", "b:1"}, Advertise: "10.0.0.1:30123", Secret: testSecret},
			static: []string{"b:1", "10.0.0.1:30123"}, self: "10.0.0.1:30123"},
		{name: "ipv6", cfg: Config{Peers: []string{"[fd00:0::1]:30123"}, Advertise: "[fd00::1]:30123", Secret: testSecret},
			static: []string{"[fd00::1]:30123"}, self: "[fd00::1]:30123"},
		{name: "dns", cfg: Config{Peers: []string{"dns:cacheyd-peers.cacheyd.svc:30123"}, Advertise: "10.0.0.1:30123", Secret: testSecret},
			dns: "cacheyd-peers.cacheyd.svc", port: "30123", self: "10.0.0.1:30123"},
		{name: "parent alone", cfg: Config{Parent: "http://cacheyd.cacheyd.svc:30123/"}, parent: "http://cacheyd.cacheyd.svc:30123"},
		{name: "self not listed", cfg: Config{Peers: []string{"a:1", "b:1"}, Advertise: "c:1", Secret: testSecret}, err: "not among the members"},
		{name: "no advertise", cfg: Config{Peers: []string{"a:1"}, Secret: testSecret}, err: "advertise"},
		{name: "no port", cfg: Config{Peers: []string{"a"}, Advertise: "a:1", Secret: testSecret}, err: "host:port"},
		{name: "bad port", cfg: Config{Peers: []string{"a:0"}, Advertise: "a:1", Secret: testSecret}, err: "port"},
		{name: "dns with others", cfg: Config{Peers: []string{"dns:a:1", "b:1"}, Advertise: "b:1", Secret: testSecret}, err: "stands alone"},
		{name: "dns without port", cfg: Config{Peers: []string{"dns:a"}, Advertise: "b:1", Secret: testSecret}, err: "dns:NAME:PORT"},
		{name: "parent with a path", cfg: Config{Parent: "http://a:1/v2"}, err: "base URL"},
		{name: "parent not http", cfg: Config{Parent: "ftp://a:1"}, err: "base URL"},
		{name: "no secret", cfg: Config{Peers: []string{"a:1"}, Advertise: "a:1"}, err: "cluster secret"},
		{name: "a short secret", cfg: Config{Peers: []string{"a:1"}, Advertise: "a:1", Secret: "short"}, err: "shorter than 32"},
		{name: "over the cap", cfg: Config{Peers: manyMembers(MaxMembers + 1), Advertise: "10.0.0.1:1", Secret: testSecret}, err: "more than the 128"},
		{name: "at the cap", cfg: Config{Peers: manyMembers(MaxMembers), Advertise: "10.0.0.1:1", Secret: testSecret},
			static: manyMembers(MaxMembers), self: "10.0.0.1:1"},
		{name: "parent is this replica", cfg: Config{Peers: []string{"a:1", "b:1"}, Advertise: "a:1", Secret: testSecret, Parent: "http://A:1"}, err: "is this replica"},
		{name: "parent is where it listens", cfg: Config{Listen: ":30123", Parent: "http://localhost:30123"}, err: "is this cacheyd"},
		{name: "parent on a loopback address", cfg: Config{Listen: ":30123", Parent: "http://127.0.0.2:30123"}, err: "is this cacheyd"},
		{name: "parent at its listen address", cfg: Config{Listen: "10.0.0.1:80", Parent: "http://10.0.0.1"}, err: "is this cacheyd"},
		{name: "parent elsewhere on the same port", cfg: Config{Listen: ":30123", Parent: "http://cacheyd.cacheyd.svc:30123"},
			parent: "http://cacheyd.cacheyd.svc:30123"},
		{name: "parent on another port of this machine", cfg: Config{Listen: ":30124", Parent: "http://127.0.0.1:30123"},
			parent: "http://127.0.0.1:30123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, self, parent, err := tt.cfg.parse()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parse() error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(src.static, tt.static) || src.dnsName != tt.dns || src.port != tt.port || self != tt.self || parent != tt.parent {
				t.Errorf("parse() = %+v, %q, %q; want static %v dns %q:%q, self %q, parent %q", src, self, parent, tt.static, tt.dns, tt.port, tt.self, tt.parent)
			}
		})
	}
}

// manyMembers is n members, 10.0.0.1:1 first, sorted as parse keeps them.
func manyMembers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d:1", i/250, i%250+1)
	}
	slices.Sort(out)
	return out
}

func TestAdvertiseAddr(t *testing.T) {
	for _, tt := range []struct{ podIP, listen, want string }{
		{"10.1.2.3", ":30123", "10.1.2.3:30123"},
		{"fd00::5", ":30123", "[fd00::5]:30123"},
		{"10.1.2.3", "0.0.0.0:8080", "10.1.2.3:8080"},
		{"10.1.2.3", "192.168.0.9:30123", "192.168.0.9:30123"}, // a listen host is its own answer
	} {
		if got, err := AdvertiseAddr(tt.podIP, tt.listen); err != nil || got != tt.want {
			t.Errorf("AdvertiseAddr(%q, %q) = %q, %v; want %q", tt.podIP, tt.listen, got, err, tt.want)
		}
	}
	// Without a pod IP: a non-loopback address of this machine, if it has one.
	got, err := AdvertiseAddr("", ":30123")
	if err != nil {
		return // a machine with loopback only: the error asks for --advertise
	}
	host, port, _ := net.SplitHostPort(got)
	if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() || port != "30123" {
		t.Errorf("AdvertiseAddr without a pod IP = %q, want a non-loopback address with port 30123", got)
	}
}
