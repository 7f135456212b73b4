package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// loadTLS reads --tls-cert and --tls-key, which go together; neither means
// plain HTTP (nil). The pair is read once: a renewed certificate takes a
// restart.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// peerTLS is the serving configuration of --peer-listen: --peer-tls-cert
// and --peer-tls-key, which need --peer-listen; nil for plain HTTP.
func (s *Flags) peerTLS() (*tls.Config, error) {
	if s.PeerTLSCert == "" && s.PeerTLSKey == "" {
		return nil, nil
	}
	if s.PeerTLSCert == "" || s.PeerTLSKey == "" {
		return nil, errors.New("--peer-tls-cert and --peer-tls-key go together")
	}
	if s.PeerListen == "" {
		return nil, errors.New("--peer-tls-cert needs --peer-listen: the certificate is the members' listener's")
	}
	cert, err := tls.LoadX509KeyPair(s.PeerTLSCert, s.PeerTLSKey)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-cert %s, --peer-tls-key %s: %w", s.PeerTLSCert, s.PeerTLSKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// peerClientTLS is how a replica asks its peers over HTTPS: it trusts the
// system roots and its own certificates (own), checking the peer's name
// or address as usual, and beside that a peer that presents one of own
// exactly, at whatever address: replicas share one certificate, made
// before the addresses of their pods are known, and only a holder of its
// key can present it.
func peerClientTLS(own []tls.Certificate) *tls.Config {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	mine := map[string]bool{}
	for _, cert := range own {
		for i, der := range cert.Certificate {
			if leaf, err := x509.ParseCertificate(der); err == nil {
				roots.AddCert(leaf)
				if i == 0 {
					mine[string(der)] = true
				}
			}
		}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Checked in VerifyConnection, in full: the usual chain and name,
		// or our own certificate exactly.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if mine[string(leaf.Raw)] {
				return nil
			}
			if cs.ServerName == "" {
				return errors.New("peer certificate: no name to check it against")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: cs.ServerName})
			return err
		},
	}
}
