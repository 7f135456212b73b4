package oci

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRegistryList(t *testing.T) {
	tests := []struct {
		in      []string
		want    RegistryList
		wantErr bool
	}{
		{in: nil, want: nil},
		{in: []string{"ghcr.io", "Docker.io", "index.docker.io", "ghcr.io"}, want: RegistryList{"docker.io", "ghcr.io"}},
		{in: []string{"registry.internal:5000"}, want: RegistryList{"registry.internal:5000"}},
		{in: []string{"ghcr.io", "not a host"}, wantErr: true},
		{in: []string{""}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRegistryList(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseRegistryList(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" && !tt.wantErr {
			t.Errorf("ParseRegistryList(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestRegistryListCheck(t *testing.T) {
	l, err := ParseRegistryList([]string{"docker.io", "ghcr.io"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		list     RegistryList
		registry string
		allowed  bool
	}{
		{nil, "anything.example", true},
		{RegistryList{}, "anything.example", true},
		{l, "docker.io", true},
		{l, "ghcr.io", true},
		{l, "quay.io", false},
		{l, "ghcr.io:443", false}, // another host:port is another registry
		{l, "", false},
	}
	for _, tt := range tests {
		err := tt.list.Check(tt.registry)
		if tt.allowed {
			if err != nil {
				t.Errorf("%v.Check(%q) = %v, want nil", tt.list, tt.registry, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusForbidden || e.Code != CodeDenied {
			t.Errorf("%v.Check(%q) = %v, want 403 DENIED", tt.list, tt.registry, err)
		}
	}
}
