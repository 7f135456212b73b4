package upstream

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCredentials(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	file := writeFile(t, `{
		"auths": {
			"https://index.docker.io/v1/": {"auth": "`+b64("second:ignored")+`"},
			"docker.io": {"auth": "`+b64("hub:hubpw")+`"},
			"ghcr.io": {"username": "gh", "password": "ghpw"},
			"http://LOCALHOST:5000/v2/": {"identitytoken": "refresh"},
			"quay.io": {"registrytoken": "bearer"},
			"empty.test": {},
			"not a registry!": {"auth": "`+b64("x:y")+`"}
		},
		"credsStore": "desktop"
	}`)
	var logs bytes.Buffer
	got, err := loadCredentials(file, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]authn.AuthConfig{
		"docker.io":      {Username: "hub", Password: "hubpw"}, // the first key in sorted order
		"ghcr.io":        {Username: "gh", Password: "ghpw"},
		"localhost:5000": {IdentityToken: "refresh"},
		"quay.io":        {RegistryToken: "bearer"},
	}
	have := map[string]authn.AuthConfig{}
	for reg, a := range got {
		cfg, err := authn.Authorization(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		have[reg] = *cfg
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("credentials (-want +got):\n%s", diff)
	}
	for _, warned := range []string{"credential helpers are not run", "empty.test", "not a registry!", "registry named twice"} {
		if !strings.Contains(logs.String(), warned) {
			t.Errorf("no warning about %q in:\n%s", warned, logs.String())
		}
	}
}

func TestLoadCredentialsErrors(t *testing.T) {
	for name, path := range map[string]string{
		"missing":    filepath.Join(t.TempDir(), "none.json"),
		"not json":   writeFile(t, `{"auths": [`),
		"bad base64": writeFile(t, `{"auths": {"ghcr.io": {"auth": "!!!"}}}`),
	} {
		if _, err := New(Config{CredentialsFile: path}); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if got, err := loadCredentials("", nil); err != nil || len(got) != 0 {
		t.Errorf(`loadCredentials("") = %v, %v; want none`, got, err)
	}
}
