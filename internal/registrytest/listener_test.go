package registrytest

import (
	"net"
	"testing"
)

func TestCountingListener(t *testing.T) {
	l := NewCountingListener(t)
	if n, err := l.Accepted(t.Context()); err != nil || n != 0 {
		t.Fatalf("Accepted = %d, %v before any connection, want 0", n, err)
	}
	for range 3 {
		conn, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	if n, err := l.Accepted(t.Context()); err != nil || n != 3 {
		t.Fatalf("Accepted = %d, %v after 3 connections, want 3", n, err)
	}
	if l.Port() == "" || l.Port() == "0" {
		t.Errorf("Port() = %q", l.Port())
	}
}

func TestSilentListener(t *testing.T) {
	l := NewSilentListener(t)
	conn, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := l.WaitAccepted(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Accepted(t.Context()); err != nil || n != 1 {
		t.Fatalf("Accepted = %d, %v, want 1", n, err)
	}
}
