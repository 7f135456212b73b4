//go:build !linux

package server

import "net"

// hangupWatch would notice a client's close (hangup_linux.go); elsewhere a
// client that leaves is noticed when a write to it fails.
type hangupWatch struct{}

func watchHangup(net.Conn, func()) *hangupWatch { return nil }

func (*hangupWatch) stop() {}
