package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	"github.com/cacheyd/cacheyd/cluster"
	"github.com/cacheyd/cacheyd/internal/peerauth"
)

// clusterConfig is the cluster's Config for --peers, --advertise,
// --cluster-secret and --parent; zero (a cacheyd alone) when neither
// --peers nor --parent is set. Peers are asked over HTTPS when the
// listener they are served on speaks it: --peer-listen with
// --peer-tls-cert, or --listen with --tls-cert.
func (s *Flags) clusterConfig(serving, peerServing *tls.Config) (cluster.Config, error) {
	if s.PeerListen != "" && len(s.Peers) == 0 {
		return cluster.Config{}, errors.New("--peer-listen serves the members of --peers, and there are none")
	}
	if len(s.Peers) == 0 && s.Parent == "" {
		return cluster.Config{}, nil
	}
	if len(s.Peers) > 0 {
		if s.ClusterSecret == "" {
			return cluster.Config{}, errors.New("--peers needs --cluster-secret (CACHEYD_CLUSTER_SECRET, from a Secret): the replicas believe each other only with its proof; make one with: openssl rand -base64 32")
		}
		if err := peerauth.Validate(s.ClusterSecret); err != nil {
			return cluster.Config{}, fmt.Errorf("--cluster-secret: %w", err)
		}
	}
	c := cluster.Config{Peers: s.Peers, Refresh: s.PeerRefresh, Advertise: s.Advertise, Parent: s.Parent, Secret: s.ClusterSecret}
	membersOn := s.Listen
	if s.PeerListen != "" {
		membersOn, serving = s.PeerListen, peerServing
	}
	if len(s.Peers) > 0 && c.Advertise == "" {
		a, err := cluster.AdvertiseAddr(os.Getenv("POD_IP"), membersOn)
		if err != nil {
			return c, err
		}
		c.Advertise = a
	}
	if serving != nil && len(s.Peers) > 0 {
		c.TLS = peerClientTLS(serving.Certificates)
	}
	return c, nil
}
