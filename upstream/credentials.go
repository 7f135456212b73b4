package upstream

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/cacheyd/cacheyd/oci"
)

// loadCredentials reads cacheyd's own credentials from a Docker config.json
// and keys them by canonical registry name ("https://index.docker.io/v1/"
// becomes docker.io). It uses docker/cli's own parser, which go-containerregistry
// already depends on, so the file means exactly what it means to docker.
// Credential helpers are not run: cacheyd is a server and runs no programs
// named by a file. Entries it cannot use are logged and skipped.
func loadCredentials(path string, log *slog.Logger) (map[string]authn.Authenticator, error) {
	out := make(map[string]authn.Authenticator)
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("upstream: credentials: %w", err)
	}
	defer f.Close()
	cf := configfile.New(path)
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("upstream: credentials %s: %w", path, err)
	}
	if cf.CredentialsStore != "" || len(cf.CredentialHelpers) > 0 {
		log.Warn("credential helpers are not run; only the file's auths are used", "file", path)
	}
	// Sorted, so that when two keys name the same registry the choice does
	// not depend on map order: the first wins.
	keys := make([]string, 0, len(cf.AuthConfigs))
	for k := range cf.AuthConfigs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		ac := cf.AuthConfigs[key]
		reg, err := oci.NormalizeRegistry(credentials.ConvertToHostname(key))
		if err != nil {
			log.Warn("credentials entry ignored: not a registry", "file", path, "key", key)
			continue
		}
		cfg := authn.AuthConfig{
			Username:      ac.Username,
			Password:      ac.Password,
			IdentityToken: ac.IdentityToken,
			RegistryToken: ac.RegistryToken,
		}
		if cfg == (authn.AuthConfig{}) {
			log.Warn("credentials entry ignored: empty", "file", path, "registry", reg)
			continue
		}
		if _, dup := out[reg]; dup {
			log.Warn("credentials entry ignored: registry named twice", "file", path, "key", key)
			continue
		}
		out[reg] = authn.FromConfig(cfg)
	}
	return out, nil
}
