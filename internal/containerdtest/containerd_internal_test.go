package containerdtest

import "testing"

func TestServerVersion(t *testing.T) {
	tests := []struct{ name, out, want string }{
		{"ctr version output", "Client:\n  Version:  1.6.20\n  Revision: x\n\nServer:\n  Version:  1.7.1\n  Revision: y\n  UUID: z\n", "1.7.1"},
		{"no server section", "Client:\n  Version:  1.6.20\n", "(unknown version)"},
		{"no version line", "Server:\n  UUID: z\n", "(unknown version)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serverVersion(tt.out); got != tt.want {
				t.Errorf("serverVersion(%q) = %q, want %q", tt.out, got, tt.want)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
	}
	for _, tt := range tests {
		if got := tail(tt.s, tt.n); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
