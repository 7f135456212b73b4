package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/cacheyd/cacheyd/internal/registrytest"
	"github.com/cacheyd/cacheyd/oci"
)

// TestTLSPeersShareFills: two replicas serving HTTPS (--tls-cert, one
// certificate for both, as replicas usually share one) and guarded by a
// client token ask each other over HTTPS with that token: every blob,
// pulled through one replica and then the other, is fetched from upstream
// exactly once. A peer that could not be reached (plain HTTP to a TLS
// port, an untrusted certificate, a missing token) would send the asking
// replica to upstream itself, and the counts would be two.
func TestTLSPeersShareFills(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	const blobs = 16
	digests := make([]string, blobs)
	contents := make([][]byte, blobs)
	for i := range blobs {
		contents[i] = []byte(fmt.Sprintf("layer %d shared over tls", i))
		digests[i] = up.SeedBlob(t, "team/app", contents[i]).String()
	}
	certFile, keyFile, pool := writeSelfSigned(t)
	addrs := []string{freeAddr(t), freeAddr(t)}
	const token = "peer-and-client-token-0123456789"
	bases := make([]string, len(addrs))
	for i, addr := range addrs {
		flags := secureFlags(t, map[string]string{up.Host(): up.URL()})
		flags.Listen, flags.Advertise, flags.Peers = addr, addr, addrs
		flags.TLSCert, flags.TLSKey = certFile, keyFile
		flags.ClientToken = []string{token}
		flags.ClusterSecret = testClusterSecret
		bases[i] = mustServe(t, flags)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	pullEachOnce(t, up, bases, digests, contents, func(req *http.Request) (*http.Response, error) {
		req.Header.Set(oci.TokenHeader, token)
		return client.Do(req)
	})
}

// freeAddr returns a loopback address with a port free now, for a replica
// whose address its peers must know before it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestPeersOverTheirOwnTLSListener: replicas serve each other on a
// listener of their own (--peer-listen) over HTTPS (--peer-tls-cert), with
// one certificate made for a name and none of their addresses, as a chart
// makes it before the pods have any, while nodes keep plain HTTP on
// --listen: every blob pulled through both is fetched from upstream once,
// and the members' port speaks nothing but TLS.
func TestPeersOverTheirOwnTLSListener(t *testing.T) {
	up := registrytest.New(t, registrytest.Options{})
	const blobs = 8
	digests := make([]string, blobs)
	contents := make([][]byte, blobs)
	for i := range blobs {
		contents[i] = []byte(fmt.Sprintf("layer %d shared over the members' tls", i))
		digests[i] = up.SeedBlob(t, "team/app", contents[i]).String()
	}
	certFile, keyFile, _ := writeSelfSignedFor(t, []string{"cacheyd-peers.cacheyd.svc"}, nil)
	peerAddrs := []string{freeAddr(t), freeAddr(t)}
	bases := make([]string, len(peerAddrs))
	for i := range peerAddrs {
		flags := secureFlags(t, map[string]string{up.Host(): up.URL()})
		flags.PeerListen, flags.Peers, flags.ClusterSecret = peerAddrs[i], peerAddrs, testClusterSecret
		flags.PeerTLSCert, flags.PeerTLSKey = certFile, keyFile
		bases[i] = mustServe(t, flags)
		if !strings.HasPrefix(bases[i], "http://") {
			t.Fatalf("nodes are served at %s, want plain HTTP", bases[i])
		}
	}
	pullEachOnce(t, up, bases, digests, contents, http.DefaultClient.Do)
	if resp, err := http.Get("http://" + peerAddrs[0] + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the members' port answers plain HTTP")
		}
	}
}

// pullEachOnce gets every blob through every base with do, checks its
// bytes, and fails the test unless upstream sent each blob exactly once.
func pullEachOnce(t *testing.T, up *registrytest.Registry, bases, digests []string, contents [][]byte, do func(*http.Request) (*http.Response, error)) {
	t.Helper()
	for _, base := range bases {
		for i, dg := range digests {
			req, err := http.NewRequest(http.MethodGet, base+"/v2/team/app/blobs/"+dg+"?ns="+up.Host(), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, contents[i]) {
				t.Fatalf("%s blob %d: %d, %q, %v", base, i, resp.StatusCode, body, err)
			}
		}
	}
	for i, dg := range digests {
		if n := up.Count(http.MethodGet, registrytest.KindBlob, dg); n != 1 {
			t.Errorf("blob %d fetched from upstream %d times, want once", i, n)
		}
	}
}
