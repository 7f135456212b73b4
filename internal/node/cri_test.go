package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The recorded configurations are what the CRI Status call (verbose) of
// this machine's containerd 1.6 and 2.4 answered as Info["config"], the
// daemons started with the CRI plugin on and config_path
// /etc/containerd/certs.d (their temporary directories renamed /run/test).
func TestParseRecordedCRIConfig(t *testing.T) {
	tests := []struct {
		file    string
		want    CRIConfig
		wantErr error
	}{
		{file: "cri-config-1.6.json", want: CRIConfig{ConfigPath: DefaultCertsDir}},
		// containerd 2 reports only the runtime's part: AskCRI asks the
		// images plugin instead.
		{file: "cri-config-2.4.json", wantErr: ErrNoRegistrySection},
	}
	for _, tt := range tests {
		raw, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseCRIConfig(string(raw))
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err %v, want %v", tt.file, err, tt.wantErr)
		}
		if got.ConfigPath != tt.want.ConfigPath || !slices.Equal(got.Mirrors, tt.want.Mirrors) {
			t.Errorf("%s: %+v, want %+v", tt.file, got, tt.want)
		}
	}
}

// TestParseCRIConfigLegacyMirrors reads the recorded 1.6 configuration
// with its registry section as a node with mirrors set shows it.
func TestParseCRIConfigLegacyMirrors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "cri-config-1.6.json"))
	if err != nil {
		t.Fatal(err)
	}
	old := `"configPath":"/etc/containerd/certs.d","mirrors":null`
	if !strings.Contains(string(raw), old) {
		t.Fatalf("the recording has no %s", old)
	}
	edited := strings.Replace(string(raw), old, `"configPath":"","mirrors":{"docker.io":{"endpoint":["https://mirror.example"]},"ghcr.io":{"endpoint":[]}}`, 1)
	got, err := ParseCRIConfig(edited)
	if err != nil {
		t.Fatal(err)
	}
	want := CRIConfig{Mirrors: []string{"docker.io", "ghcr.io"}}
	if got.ConfigPath != "" || !slices.Equal(got.Mirrors, want.Mirrors) {
		t.Errorf("%+v, want %+v", got, want)
	}
	if _, err := ParseCRIConfig("{"); err == nil || errors.Is(err, ErrNoRegistrySection) {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestCRIConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		c    CRIConfig
		want []Kind
	}{
		{name: "the certs dir", c: CRIConfig{ConfigPath: DefaultCertsDir}},
		{name: "the certs dir, trailing slash", c: CRIConfig{ConfigPath: DefaultCertsDir + "/"}},
		{name: "unset", c: CRIConfig{}, want: []Kind{ConfigPathUnset}},
		{name: "containerd 2's default list", c: CRIConfig{ConfigPath: DefaultCertsDir + ":/etc/docker/certs.d"}, want: []Kind{ConfigPathList}},
		{name: "another directory", c: CRIConfig{ConfigPath: "/etc/docker/certs.d"}, want: []Kind{ConfigPathOther}},
		{name: "legacy mirrors", c: CRIConfig{Mirrors: []string{"docker.io"}}, want: []Kind{ConfigPathUnset, LegacyMirrors}},
		{name: "legacy mirrors beside config_path", c: CRIConfig{ConfigPath: DefaultCertsDir, Mirrors: []string{"docker.io"}}, want: []Kind{LegacyMirrors}},
	}
	for _, tt := range tests {
		var got []Kind
		for _, p := range tt.c.Problems(DefaultCertsDir) {
			got = append(got, p.Kind)
			if p.Detail == "" {
				t.Errorf("%s: %s without detail", tt.name, p.Kind)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fakeCRI answers Version and Status as containerd's CRI plugin does, and
// the introspection service's Plugins as containerd 2's.
type fakeCRI struct {
	runtime.UnimplementedRuntimeServiceServer
	introspection.UnimplementedIntrospectionServer
	version, config, exportedPath string
}

func (f *fakeCRI) Version(context.Context, *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{RuntimeName: "containerd", RuntimeVersion: f.version}, nil
}

func (f *fakeCRI) Status(_ context.Context, r *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	resp := &runtime.StatusResponse{Status: &runtime.RuntimeStatus{}}
	if r.Verbose {
		resp.Info = map[string]string{"config": f.config}
	}
	return resp, nil
}

func (f *fakeCRI) Plugins(_ context.Context, r *introspection.PluginsRequest) (*introspection.PluginsResponse, error) {
	if !slices.Equal(r.Filters, []string{imagesPluginFilter}) {
		return &introspection.PluginsResponse{}, nil
	}
	return &introspection.PluginsResponse{Plugins: []*introspection.Plugin{{
		Type: "io.containerd.cri.v1", ID: "images",
		Exports: map[string]string{"RegistryConfigPath": f.exportedPath},
	}}}, nil
}

// serveFake serves f on a unix socket in a temporary directory until the
// test ends (Stop at cleanup ends Serve's goroutine).
func serveFake(t *testing.T, f *fakeCRI) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtime.RegisterRuntimeServiceServer(s, f)
	introspection.RegisterIntrospectionServer(s, f)
	done := make(chan error, 1)
	// Ends when Stop is called at cleanup.
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return socket
}

func TestAskCRI(t *testing.T) {
	raw16, err := os.ReadFile(filepath.Join("testdata", "cri-config-1.6.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw24, err := os.ReadFile(filepath.Join("testdata", "cri-config-2.4.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fake fakeCRI
		want CRIStatus
	}{
		{name: "1.6, from Status", fake: fakeCRI{version: "1.6.20~ds1", config: string(raw16), exportedPath: "/not/asked"},
			want: CRIStatus{Version: "1.6.20~ds1", Config: CRIConfig{ConfigPath: DefaultCertsDir}}},
		{name: "2.4, from the images plugin", fake: fakeCRI{version: "v2.4.2", config: string(raw24), exportedPath: "/etc/containerd/certs.d:/etc/docker/certs.d"},
			want: CRIStatus{Version: "v2.4.2", Config: CRIConfig{ConfigPath: "/etc/containerd/certs.d:/etc/docker/certs.d"}}},
	}
	for _, tt := range tests {
		got, err := AskCRI(t.Context(), serveFake(t, &tt.fake))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got.Version != tt.want.Version || got.Config.ConfigPath != tt.want.Config.ConfigPath || len(got.Config.Mirrors) != 0 {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestCheckAsksContainerd: Check reports what the socket says, and a
// socket nobody listens on as a problem of its own.
func TestCheckAsksContainerd(t *testing.T) {
	raw16, err := os.ReadFile(filepath.Join("testdata", "cri-config-1.6.json"))
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(up.Close)
	certs := filepath.Join(t.TempDir(), "certs.d")
	c := Config{CertsDir: certs, Mirror: up.URL, Version: Version{1, 6}, Registries: []string{"docker.io"}}
	if _, err := Configure(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	unreachable := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "nobody.sock"), Net: "unix"}
	tests := []struct {
		name, socket string
		wantVersion  string
		want         []Kind
	}{
		{name: "config_path another directory", socket: serveFake(t, &fakeCRI{version: "1.6.20~ds1", config: string(raw16)}), wantVersion: "1.6.20~ds1", want: []Kind{ConfigPathOther}},
		{name: "no containerd", socket: unreachable.Name, want: []Kind{ContainerdUnreachable}},
	}
	for _, tt := range tests {
		c.ContainerdSocket = tt.socket
		r, err := Check(t.Context(), c, up.Client())
		if err != nil {
			t.Fatal(err)
		}
		var got []Kind
		for _, p := range r.Problems {
			got = append(got, p.Kind)
			if p.Kind == ContainerdUnreachable && !strings.Contains(p.Detail, "containerd not reachable at "+tt.socket) {
				t.Errorf("%s: %q", tt.name, p.Detail)
			}
		}
		if r.CRIVersion != tt.wantVersion || !slices.Equal(got, tt.want) || r.Configured {
			t.Errorf("%s: version %q, problems %v (configured %v), want %q, %v", tt.name, r.CRIVersion, got, r.Configured, tt.wantVersion, tt.want)
		}
	}
}
