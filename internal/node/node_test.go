package node

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const mirror = "http://127.0.0.1:30123"

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{in: "1.6", want: Version{1, 6}},
		{in: "v2.1.4", want: Version{2, 1}},
		{in: "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", want: Version{1, 6}},
		{in: "containerd github.com/containerd/containerd/v2 v2.4.2 0a4c2f4", want: Version{2, 4}},
		{in: "containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da", want: Version{1, 7}},
		{in: "containerd", wantErr: true},
		{in: "0.2", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for v, want := range map[Version]bool{{1, 6}: false, {1, 7}: true, {2, 0}: true, {}: false} {
		if v.HasDefault() != want {
			t.Errorf("%v.HasDefault() = %v", v, !want)
		}
	}
}

// TestConfigureAsContainerdReadsIt writes for each containerd version and
// asks containerd's host resolution where each registry is pulled from:
// the mirror first, with ns, then the registry unless there is no fallback.
func TestConfigureAsContainerdReadsIt(t *testing.T) {
	tests := []struct {
		name       string
		version    Version
		registries []string
		noFallback bool
		wantDirs   []string
		// resolve: registry → the hosts containerd tries, in order.
		resolve map[string][]string
	}{
		{
			name: "2.1 writes _default", version: Version{2, 1},
			wantDirs: []string{"_default"},
			resolve: map[string][]string{
				"docker.io": {mirror + "/v2", "https://registry-1.docker.io/v2"},
				"ghcr.io":   {mirror + "/v2", "https://ghcr.io/v2"},
			},
		},
		{
			name: "1.7 without fallback", version: Version{1, 7}, noFallback: true,
			wantDirs: []string{"_default"},
			resolve:  map[string][]string{"docker.io": {mirror + "/v2"}, "ghcr.io": {mirror + "/v2"}},
		},
		{
			name: "1.6 writes one directory per registry", version: Version{1, 6},
			registries: []string{"docker.io", "127.0.0.1:5000"},
			wantDirs:   []string{"127.0.0.1_5000_", "docker.io"},
			resolve: map[string][]string{
				"docker.io":      {mirror + "/v2", "https://registry-1.docker.io/v2"},
				"127.0.0.1:5000": {mirror + "/v2", "https://127.0.0.1:5000/v2"},
				"ghcr.io":        {"https://ghcr.io/v2"},
			},
		},
		{
			name: "2.0 with a registry of its own", version: Version{2, 0},
			registries: []string{"quay.io"},
			wantDirs:   []string{"_default", "quay.io"},
			resolve:    map[string][]string{"quay.io": {mirror + "/v2", "https://quay.io/v2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			c := Config{CertsDir: root, Mirror: mirror + "/", Version: tt.version, Registries: tt.registries, NoFallback: tt.noFallback}
			files, err := Configure(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(tt.wantDirs) {
				t.Fatalf("files %+v, want %v", files, tt.wantDirs)
			}
			for _, f := range files {
				if f.Action != Written {
					t.Errorf("%s: %s, want written", f.Path, f.Action)
				}
			}
			if got := dirNames(t, root); !slices.Equal(got, tt.wantDirs) {
				t.Errorf("directories %v, want %v", got, tt.wantDirs)
			}
			for reg, want := range tt.resolve {
				hosts, err := Resolve(t.Context(), root, tt.version, reg)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, h := range hosts {
					got = append(got, h.URL)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s resolves to %v, want %v", reg, got, want)
				}
				if got[0] == mirror+"/v2" && (!hosts[0].NS || !hosts[0].Pull) {
					t.Errorf("%s: the mirror gets ns %v, pulls %v; want both", reg, hosts[0].NS, hosts[0].Pull)
				}
			}
			// A second run finds its own files as they should be.
			again, err := Configure(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range again {
				if f.Action != Unchanged {
					t.Errorf("second run: %s %s, want unchanged", f.Path, f.Action)
				}
			}
		})
	}
}

func TestConfigureOn16NeedsRegistries(t *testing.T) {
	_, err := Configure(t.Context(), Config{CertsDir: t.TempDir(), Mirror: mirror, Version: Version{1, 6}})
	if !errors.Is(err, ErrNoDefault) {
		t.Fatalf("err %v, want ErrNoDefault", err)
	}
	_, err = Configure(t.Context(), Config{CertsDir: t.TempDir(), Mirror: mirror})
	if !errors.Is(err, ErrNoDefault) {
		t.Fatalf("unknown version: err %v, want ErrNoDefault", err)
	}
	for _, m := range []string{"127.0.0.1:30123", "ftp://x", "http://x/v2/library", "http://x?ns=docker.io"} {
		if _, err := Configure(t.Context(), Config{CertsDir: t.TempDir(), Mirror: m, Version: Version{2, 0}}); err == nil {
			t.Errorf("mirror %q accepted", m)
		}
	}
}

// TestForeignFilesAreNeverTouched: a hosts.toml cacheyd did not write is
// refused by Configure, named in the error, left byte for byte by
// Configure and Remove, and so are the directories someone else made.
func TestForeignFilesAreNeverTouched(t *testing.T) {
	root := t.TempDir()
	foreign := map[string][]byte{
		"docker.io/hosts.toml": []byte("server = \"https://registry-1.docker.io\"\n\n[host.\"http://other:5000\"]\n  capabilities = [\"pull\"]\n"),
		"ghcr.io/ca.crt":       []byte("not a certificate\n"),
	}
	for name, b := range foreign {
		writeFile(t, filepath.Join(root, name), b)
	}
	if err := os.Mkdir(filepath.Join(root, "quay.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := Config{CertsDir: root, Mirror: mirror, Version: Version{1, 6}, Registries: []string{"docker.io", "ghcr.io", "quay.io", "127.0.0.1:5000"}}
	files, err := Configure(t.Context(), c)
	if !errors.Is(err, ErrForeign) {
		t.Fatalf("err %v, want ErrForeign", err)
	}
	actions := map[string]Action{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f.Path)
		actions[rel] = f.Action
	}
	want := map[string]Action{
		"docker.io/hosts.toml":       Refused,
		"ghcr.io/hosts.toml":         Written,
		"quay.io/hosts.toml":         Written,
		"127.0.0.1_5000_/hosts.toml": Written,
	}
	if !equalMaps(actions, want) {
		t.Errorf("actions %v, want %v", actions, want)
	}
	removed, err := Remove(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Errorf("removed %+v, want cacheyd's 3 files", removed)
	}
	for _, f := range removed {
		// Only the directory cacheyd made goes: ghcr.io holds someone
		// else's file and quay.io was someone else's, empty.
		if rel, _ := filepath.Rel(root, f.Path); f.DirRemoved != (rel == "127.0.0.1_5000_/hosts.toml") {
			t.Errorf("%s: directory removed %v", rel, f.DirRemoved)
		}
	}
	for name, b := range foreign {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s changed: %q, %v", name, got, err)
		}
	}
	if got, want := dirNames(t, root), []string{"docker.io", "ghcr.io", "quay.io"}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if got := allFiles(t, root); len(got) != 2 {
		t.Errorf("files left %v, want only the 2 foreign ones", got)
	}
}

// TestWriteAtomic: a new name is never written over (a file that appears
// meanwhile is someone else's), a replacement is whole, and no temporary
// file is left either way.
func TestWriteAtomic(t *testing.T) {
	tests := []struct {
		name    string
		before  []byte // nil: no file
		replace bool
		wantErr error
		want    []byte
	}{
		{name: "new", replace: false, want: []byte("new\n")},
		{name: "appeared meanwhile", before: []byte("theirs\n"), replace: false, wantErr: fs.ErrExist, want: []byte("theirs\n")},
		{name: "replace ours", before: []byte(Marker + "\nold\n"), replace: true, want: []byte("new\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if tt.before != nil {
				writeFile(t, path, tt.before)
			}
			err := writeAtomic(path, []byte("new\n"), tt.replace)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("file %q, want %q", got, tt.want)
			}
			if files := allFiles(t, dir); len(files) != 1 {
				t.Errorf("files %v, want only %s", files, FileName)
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 && tt.wantErr == nil {
				t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
			}
		})
	}
}

// TestCheckNamesEachBypass sets up each way containerd would not use the
// mirror and checks Check names it, with an exit-worthy report, and that
// a node as Configure leaves it is reported configured.
func TestCheckNamesEachBypass(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(up.Close)
	down := closedAddress(t)
	tests := []struct {
		name    string
		version Version
		regs    []string
		mirror  string
		setup   map[string]string // file below the certs dir → content; "configure" runs Configure first
		want    []Kind
	}{
		{name: "configured", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"configure": ""}},
		{name: "configured 1.6", version: Version{1, 6}, regs: []string{"docker.io"}, mirror: up.URL, setup: map[string]string{"configure": ""}},
		{name: "nothing written", version: Version{2, 1}, mirror: up.URL, want: []Kind{Missing}},
		{name: "1.6 has no _default", version: Version{1, 6}, regs: []string{"docker.io"}, mirror: up.URL, setup: map[string]string{"_default/hosts.toml": "[host.\"" + up.URL + "\"]\n"}, want: []Kind{Missing}},
		{name: "empty directory", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"_default/notes.txt": "x"}, want: []Kind{Missing}},
		{name: "unparseable", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"_default/hosts.toml": "[host\n"}, want: []Kind{Unparseable}},
		{name: "no host table", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"_default/hosts.toml": "server = \"https://registry-1.docker.io\"\n"}, want: []Kind{NoHostTable}},
		{name: "a registry's own directory shadows _default", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"configure": "", "docker.io/hosts.toml": "[host.\"http://other:5000\"]\n"}, want: []Kind{ForeignMirror}},
		{name: "cacheyd's file for another address", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"_default/hosts.toml": Marker + "\n[host.\"http://10.0.0.1:30123\"]\n"}, want: []Kind{StaleMirror}},
		{name: "someone else's file naming us first", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"_default/hosts.toml": "[host.\"" + up.URL + "\"]\n"}},
		{name: "a certificate containerd cannot load", version: Version{2, 1}, mirror: up.URL, setup: map[string]string{"_default/ca.crt": "x"}, want: []Kind{Broken}},
		{name: "mirror down", version: Version{2, 1}, mirror: down, setup: map[string]string{"configure": ""}, want: []Kind{Unreachable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			c := Config{CertsDir: root, Mirror: tt.mirror, Version: tt.version, Registries: tt.regs}
			if _, ok := tt.setup["configure"]; ok {
				if _, err := Configure(t.Context(), c); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.setup {
				if name != "configure" {
					writeFile(t, filepath.Join(root, name), []byte(content))
				}
			}
			r, err := Check(t.Context(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []Kind
			for _, p := range r.Problems {
				got = append(got, p.Kind)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems %+v, want kinds %v", r.Problems, tt.want)
			}
			if r.Configured != (len(tt.want) == 0) {
				t.Errorf("configured %v with problems %v", r.Configured, got)
			}
		})
	}
}

// closedAddress is a loopback URL nothing listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// dirNames are the directories directly below root, sorted.
func dirNames(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// allFiles are the files below root, relative to it.
func allFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalMaps[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
