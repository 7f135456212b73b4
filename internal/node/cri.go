package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultContainerdSocket is where containerd listens on most nodes.
const DefaultContainerdSocket = "/run/containerd/containerd.sock"

// The kinds checkCRI reports: the CRI plugin's own configuration, which no
// hosts.toml can fix, makes it read none or other ones.
const (
	// ContainerdUnreachable: containerd's socket does not answer, so what
	// its CRI plugin reads is not known.
	ContainerdUnreachable Kind = "containerd-unreachable"
	// ConfigPathUnset: the CRI plugin's registry.config_path is empty, so
	// containerd reads no hosts.toml for the kubelet's pulls.
	ConfigPathUnset Kind = "config-path-unset"
	// ConfigPathList: config_path names several directories (containerd
	// 2.1 and 2.2 accept a list separated by ':'), of which a pull reads
	// only the one holding the registry's directory first.
	ConfigPathList Kind = "config-path-list"
	// ConfigPathOther: config_path is not the certs dir checked, so the
	// files found there are not the ones containerd reads.
	ConfigPathOther Kind = "config-path-other"
	// LegacyMirrors: the deprecated registry.mirrors section is set; it
	// shadows config_path.
	LegacyMirrors Kind = "legacy-mirrors"
)

// CRITimeout bounds each call to containerd's CRI plugin: a node's own
// socket answers in milliseconds, or not at all.
const CRITimeout = 3 * time.Second

// CRIConfig is what containerd's CRI plugin says of its registry
// configuration (the verbose Status call's Info["config"]).
type CRIConfig struct {
	// ConfigPath is registry.config_path as containerd holds it.
	ConfigPath string `json:"config_path"`
	// Mirrors are the registries of the legacy registry.mirrors section.
	Mirrors []string `json:"mirrors,omitempty"`
}

// ErrNoRegistrySection is ParseCRIConfig's answer for a configuration
// without the registry section: containerd 2's Status reports only the
// runtime's part, the registry being the images plugin's.
var ErrNoRegistrySection = errors.New("CRI config: no registry section in it")

// ParseCRIConfig reads the registry section out of the CRI plugin's
// configuration as Status reports it (containerd 1.6 and 1.7 put it at the
// top): the object named "registry" holding a "configPath", wherever it is.
func ParseCRIConfig(config string) (CRIConfig, error) {
	var doc any
	if err := json.Unmarshal([]byte(config), &doc); err != nil {
		return CRIConfig{}, fmt.Errorf("CRI config: %w", err)
	}
	reg, ok := findRegistry(doc)
	if !ok {
		return CRIConfig{}, ErrNoRegistrySection
	}
	var out CRIConfig
	out.ConfigPath, _ = reg["configPath"].(string)
	if m, ok := reg["mirrors"].(map[string]any); ok {
		for name := range m {
			out.Mirrors = append(out.Mirrors, name)
		}
		slices.Sort(out.Mirrors)
	}
	return out, nil
}

// findRegistry finds the first object named registry that has configPath,
// depth first.
func findRegistry(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		if reg, ok := v["registry"].(map[string]any); ok {
			if _, ok := reg["configPath"]; ok {
				return reg, true
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// Sorted, so that which one is found does not depend on map order.
		slices.Sort(keys)
		for _, k := range keys {
			if reg, ok := findRegistry(v[k]); ok {
				return reg, true
			}
		}
	case []any:
		for _, e := range v {
			if reg, ok := findRegistry(e); ok {
				return reg, true
			}
		}
	}
	return nil, false
}

// Problems are the ways c makes containerd bypass the hosts.toml files of
// certsDir.
func (c CRIConfig) Problems(certsDir string) []Problem {
	var out []Problem
	want := filepath.Clean(certsDir)
	switch dirs := strings.Split(c.ConfigPath, ":"); {
	case c.ConfigPath == "":
		out = append(out, Problem{Kind: ConfigPathUnset,
			Detail: "the CRI plugin's registry.config_path is empty: containerd reads no hosts.toml for the kubelet's pulls; set it to " + certsDir + " and restart containerd"})
	case len(dirs) > 1:
		among := ""
		if !slices.ContainsFunc(dirs, func(d string) bool { return d != "" && filepath.Clean(d) == want }) {
			among = ", " + certsDir + " not among them"
		}
		out = append(out, Problem{Kind: ConfigPathList, Path: c.ConfigPath,
			Detail: fmt.Sprintf("registry.config_path names %d directories%s: containerd may read another one's hosts.toml; set it to %s alone", len(dirs), among, certsDir)})
	case filepath.Clean(c.ConfigPath) != want:
		out = append(out, Problem{Kind: ConfigPathOther, Path: c.ConfigPath,
			Detail: fmt.Sprintf("containerd reads hosts.toml from %s, not %s: give --certs-dir %s", c.ConfigPath, certsDir, c.ConfigPath)})
	}
	if len(c.Mirrors) > 0 {
		out = append(out, Problem{Kind: LegacyMirrors,
			Detail: fmt.Sprintf("the legacy registry.mirrors section (%s) shadows config_path: remove it and restart containerd", strings.Join(c.Mirrors, ", "))})
	}
	return out
}

// CRIStatus is what the CRI plugin at a socket answered.
type CRIStatus struct {
	// Version is containerd's, as the Version call says it.
	Version string
	Config  CRIConfig
}

// AskCRI asks containerd's CRI plugin at socket for its version and its
// configuration (the verbose Status call). A containerd whose Status
// carries no registry section (2.0 and later) is asked its images plugin's
// config_path through its introspection service, which exports it; that
// export has no legacy mirrors, and containerd 2 fills an unset config_path
// with its default list.
func AskCRI(ctx context.Context, socket string) (CRIStatus, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return CRIStatus{}, err
	}
	defer conn.Close()
	rs := runtime.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, CRITimeout)
	defer cancel()
	v, err := rs.Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		return CRIStatus{}, fmt.Errorf("CRI Version: %w", err)
	}
	st, err := rs.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		return CRIStatus{}, fmt.Errorf("CRI Status: %w", err)
	}
	out := CRIStatus{Version: v.GetRuntimeVersion()}
	out.Config, err = ParseCRIConfig(st.GetInfo()["config"])
	if errors.Is(err, ErrNoRegistrySection) {
		out.Config.ConfigPath, err = imagesConfigPath(ctx, conn)
	}
	return out, err
}

// imagesPluginFilter selects containerd 2's CRI images plugin, the one
// holding the registry configuration.
const imagesPluginFilter = "type==io.containerd.cri.v1,id==images"

// imagesConfigPath is the config_path containerd 2's CRI images plugin
// exports.
func imagesConfigPath(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	r, err := introspection.NewIntrospectionClient(conn).Plugins(ctx, &introspection.PluginsRequest{Filters: []string{imagesPluginFilter}})
	if err != nil {
		return "", fmt.Errorf("introspection: %w", err)
	}
	for _, p := range r.GetPlugins() {
		if path, ok := p.GetExports()["RegistryConfigPath"]; ok {
			return path, nil
		}
	}
	return "", errors.New("containerd reports no CRI images plugin with a registry config_path")
}

// checkCRI asks the CRI plugin at socket and reports what in its
// configuration bypasses certsDir; a socket that does not answer is a
// problem of its own.
func checkCRI(ctx context.Context, socket, certsDir string) (string, []Problem) {
	st, err := AskCRI(ctx, socket)
	if err != nil {
		return "", []Problem{{Kind: ContainerdUnreachable, Path: socket,
			Detail: fmt.Sprintf("containerd not reachable at %s: %v", socket, err)}}
	}
	return st.Version, st.Config.Problems(certsDir)
}
