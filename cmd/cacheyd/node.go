package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cacheyd/cacheyd/internal/node"
)

// nodeCmd is "cacheyd node": point this node's containerd at cacheyd
// (hosts.toml below its certs.d), check that it took, or undo it. The
// registries given a directory of their own are the top-level
// --registries, the registries cacheyd serves (containerd 1.6 needs them:
// it reads no _default).
type nodeCmd struct {
	Check             bool   `xor:"action" env:"CACHEYD_NODE_CHECK" help:"Write nothing: report each way containerd would bypass the mirror; exit status 0 only when configured."`
	Remove            bool   `xor:"action" env:"CACHEYD_NODE_REMOVE" help:"Remove every hosts.toml cacheyd wrote, and the directories it made for them when left empty."`
	CertsDir          string `env:"CACHEYD_NODE_CERTS_DIR" default:"/etc/containerd/certs.d" placeholder:"DIR" help:"containerd's config_path: where it reads hosts.toml."`
	Mirror            string `env:"CACHEYD_NODE_MIRROR" default:"http://127.0.0.1:30123" placeholder:"URL" help:"cacheyd's address as this node reaches it."`
	ContainerdVersion string `env:"CACHEYD_NODE_CONTAINERD_VERSION" placeholder:"MAJOR.MINOR" help:"containerd's version (default: from containerd --version, when containerd is on PATH)."`
	NoFallback        bool   `env:"CACHEYD_NODE_NO_FALLBACK" help:"Give containerd no way to the registry when cacheyd fails (default: it falls back to the registry)."`
	ContainerdSocket  string `env:"CACHEYD_NODE_CONTAINERD_SOCKET" default:"/run/containerd/containerd.sock" placeholder:"PATH" help:"With --check: containerd's socket, asked what its CRI plugin reads (config_path, legacy mirrors) and its version; \"\" skips that check."`
	JSON              bool   `name:"json" env:"CACHEYD_NODE_JSON" help:"Print the result as JSON."`
}

// Run configures, checks or cleans the node until done or SIGINT/SIGTERM.
func (n *nodeCmd) Run(s *serveFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return n.run(ctx, s.Registries, os.Stdout)
}

// run does the work for registries, printing on out.
func (n *nodeCmd) run(ctx context.Context, registries []string, out io.Writer) error {
	if n.Remove {
		files, err := node.Remove(n.CertsDir)
		n.printFiles(out, files)
		return err
	}
	c := node.Config{CertsDir: n.CertsDir, Mirror: n.Mirror, Registries: registries, NoFallback: n.NoFallback, ContainerdSocket: n.ContainerdSocket}
	var err error
	if n.ContainerdVersion != "" {
		c.Version, err = node.ParseVersion(n.ContainerdVersion)
	} else {
		c.Version, err = node.DetectVersion(ctx, "")
	}
	if err != nil {
		return err
	}
	if n.Check {
		r, err := node.Check(ctx, c, nil)
		if err != nil {
			return err
		}
		n.printReport(out, r)
		if !r.Configured {
			return fmt.Errorf("node: containerd bypasses the mirror in %d way(s)", len(r.Problems))
		}
		return nil
	}
	files, err := node.Configure(ctx, c)
	n.printFiles(out, files)
	return err
}

// printFiles prints what was done to each file.
func (n *nodeCmd) printFiles(out io.Writer, files []node.File) {
	if n.JSON {
		if files == nil {
			files = []node.File{}
		}
		writeJSON(out, map[string]any{"files": files})
		return
	}
	if len(files) == 0 {
		fmt.Fprintln(out, "no file of cacheyd's")
	}
	for _, f := range files {
		line := fmt.Sprintf("%-9s %s", f.Action, f.Path)
		if f.DirRemoved {
			line += " (and its directory)"
		}
		if f.Detail != "" {
			line += ": " + f.Detail
		}
		fmt.Fprintln(out, line)
	}
}

// printReport prints a check's findings: one line per registry, then each
// problem.
func (n *nodeCmd) printReport(out io.Writer, r node.Report) {
	if n.JSON {
		writeJSON(out, r)
		return
	}
	fmt.Fprintf(out, "containerd %s, %s, mirror %s\n", r.Version, r.CertsDir, r.Mirror)
	if r.CRIVersion != "" {
		fmt.Fprintf(out, "  containerd's socket says version %s\n", r.CRIVersion)
	}
	for _, res := range r.Resolutions {
		first := "the registry"
		if len(res.Hosts) > 0 {
			first = res.Hosts[0].URL
		}
		fmt.Fprintf(out, "  %-24s first %s\n", res.Registry, first)
	}
	for _, p := range r.Problems {
		where := p.Registry
		if p.Path != "" {
			where = p.Path
		}
		if where != "" {
			where += ": "
		}
		fmt.Fprintf(out, "  %s: %s%s\n", p.Kind, where, p.Detail)
	}
	if r.Configured {
		fmt.Fprintln(out, "OK: containerd pulls through the mirror")
	}
}

// writeJSON prints v indented; a value of the command's own types always
// encodes.
func writeJSON(out io.Writer, v any) {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		panic(errors.Join(errors.New("node: json"), err))
	}
}
