package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Kind names a way containerd bypasses the mirror, as --json spells it.
type Kind string

// The kinds Check reports.
const (
	// Missing: no hosts.toml for the registry (nor _default, on 1.7+).
	Missing Kind = "missing"
	// Unparseable: a hosts.toml containerd cannot decode, which it
	// ignores with only a log line.
	Unparseable Kind = "unparseable"
	// NoHostTable: a hosts.toml with no [host] table, so containerd goes
	// to the registry (or the file's server) and to no mirror.
	NoHostTable Kind = "no-host-table"
	// ForeignMirror: someone else's hosts.toml sends the registry
	// elsewhere first.
	ForeignMirror Kind = "foreign-mirror"
	// StaleMirror: cacheyd's own file names another mirror address.
	StaleMirror Kind = "stale-mirror"
	// Broken: containerd cannot use the directory at all (a certificate
	// it cannot load): every pull of the registry fails.
	Broken Kind = "broken"
	// Unreachable: the mirror does not answer GET /v2/ from here.
	Unreachable Kind = "unreachable"
)

// Problem is one way the node bypasses the mirror.
type Problem struct {
	Kind     Kind   `json:"kind"`
	Registry string `json:"registry,omitempty"`
	Path     string `json:"path,omitempty"`
	Detail   string `json:"detail"`
}

// Resolution is where containerd would pull one registry from.
type Resolution struct {
	// Registry is the registry, or _default for every registry that has
	// no directory of its own.
	Registry string `json:"registry"`
	Hosts    []Host `json:"hosts"`
}

// Report is what Check found. The node is configured when Problems is
// empty.
type Report struct {
	CertsDir string `json:"certs_dir"`
	Mirror   string `json:"mirror"`
	Version  string `json:"containerd_version"`
	// CRIVersion is the version containerd's socket says, when asked.
	CRIVersion  string       `json:"cri_version,omitempty"`
	Configured  bool         `json:"configured"`
	Resolutions []Resolution `json:"resolutions"`
	Problems    []Problem    `json:"problems"`
}

// probeRegistry stands for every registry without a directory of its own:
// no certs dir holds a directory by that name, so containerd 1.7+ reads
// _default for it.
const probeRegistry = "registry.invalid"

// CheckTimeout bounds the mirror's reachability probe.
const CheckTimeout = 3 * time.Second

// Check reads the node's hosts.toml files as containerd does, for each
// registry c names, for _default on 1.7 and later and, there, for every
// other registry directory (each shadows _default for its registry), and
// reports every way pulls would bypass the mirror; then whether the mirror
// answers; and, given a containerd socket, whether containerd's CRI plugin
// reads these files at all. client may be nil for a default one.
func Check(ctx context.Context, c Config, client *http.Client) (Report, error) {
	mirror, err := mirrorURL(c.Mirror)
	if err != nil {
		return Report{}, err
	}
	root := c.certsDir()
	r := Report{CertsDir: root, Mirror: mirror, Version: c.Version.String(), Problems: []Problem{}}
	registries, err := checked(root, c)
	if err != nil {
		return Report{}, err
	}
	for _, reg := range registries {
		name, ask := reg, reg
		if reg == DefaultDir {
			ask = probeRegistry
		}
		hosts, err := Resolve(ctx, root, c.Version, ask)
		if err != nil {
			r.Problems = append(r.Problems, Problem{Kind: Broken, Registry: name, Detail: err.Error()})
			continue
		}
		r.Resolutions = append(r.Resolutions, Resolution{Registry: name, Hosts: hosts})
		if len(hosts) > 0 && hosts[0].URL == mirror+"/v2" && hosts[0].Pull && hosts[0].NS {
			continue
		}
		r.Problems = append(r.Problems, diagnose(root, c.Version, name, ask, hosts, mirror))
	}
	if c.ContainerdSocket != "" {
		var ps []Problem
		r.CRIVersion, ps = checkCRI(ctx, c.ContainerdSocket, root)
		r.Problems = append(r.Problems, ps...)
	}
	if p, ok := reach(ctx, client, mirror); !ok {
		r.Problems = append(r.Problems, p)
	}
	r.Configured = len(r.Problems) == 0
	return r, nil
}

// checked lists the registries to resolve: c's, _default on 1.7+, and
// there every directory of the certs dir (a registry's own directory is
// read instead of _default).
func checked(root string, c Config) ([]string, error) {
	if !c.Version.HasDefault() {
		if len(c.Registries) == 0 {
			return nil, ErrNoDefault
		}
		return slices.Clone(c.Registries), nil
	}
	out := []string{DefaultDir}
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("certs dir: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != DefaultDir && e.Name()[0] != '.' {
			out = append(out, hostOfDirectory(e.Name()))
		}
	}
	for _, reg := range c.Registries {
		if !slices.Contains(out, reg) {
			out = append(out, reg)
		}
	}
	return out, nil
}

// diagnose says why containerd does not send registry (asked as ask) to
// the mirror first, from the file containerd read for it.
func diagnose(root string, v Version, registry, ask string, hosts []Host, mirror string) Problem {
	p := Problem{Registry: registry}
	dir, err := hostDir(root, v, ask)
	if err != nil {
		p.Kind, p.Detail = Missing, fmt.Sprintf("no directory for %s in %s: containerd pulls it from the registry", registry, root)
		return p
	}
	p.Path = filepath.Join(dir, FileName)
	content, err := os.ReadFile(p.Path)
	if err != nil || len(content) == 0 {
		p.Kind, p.Detail = Missing, fmt.Sprintf("%s has no %s: containerd pulls %s from the registry", dir, FileName, registry)
		return p
	}
	var doc map[string]any
	if err := toml.Unmarshal(content, &doc); err != nil {
		p.Kind, p.Detail = Unparseable, fmt.Sprintf("containerd ignores it (%v)", err)
		return p
	}
	if _, ok := doc["host"]; !ok {
		p.Kind, p.Detail = NoHostTable, "no [host] table: containerd asks no mirror"
		return p
	}
	first := "nothing"
	if len(hosts) > 0 {
		first = hosts[0].URL
	}
	if isOurs(content) {
		p.Kind, p.Detail = StaleMirror, fmt.Sprintf("cacheyd's file names %s, not %s/v2: run cacheyd node again", first, mirror)
		return p
	}
	p.Kind, p.Detail = ForeignMirror, fmt.Sprintf("not cacheyd's: containerd asks %s first, not %s/v2", first, mirror)
	return p
}

// hostDir is the directory containerd v reads for registry, in
// containerd's own search order.
func hostDir(root string, v Version, registry string) (string, error) {
	dirs := []string{HostDirectory(registry), registry}
	if v.HasDefault() {
		dirs = append(dirs, DefaultDir)
	}
	for _, d := range dirs {
		p := filepath.Join(root, d)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
	}
	return "", fs.ErrNotExist
}

// reach asks the mirror GET /v2/ as containerd's first request would; any
// answer below 500 is a cacheyd (or a proxy in front of it) that answers.
func reach(ctx context.Context, client *http.Client, mirror string) (Problem, bool) {
	if client == nil {
		client = &http.Client{Timeout: CheckTimeout}
	}
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	p := Problem{Kind: Unreachable}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mirror+"/v2/", nil)
	if err != nil {
		p.Detail = err.Error()
		return p, false
	}
	resp, err := client.Do(req)
	if err != nil {
		p.Detail = fmt.Sprintf("GET %s/v2/: %v", mirror, err)
		return p, false
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		p.Detail = fmt.Sprintf("GET %s/v2/: %s", mirror, resp.Status)
		return p, false
	}
	return p, true
}
