// Command cacheyd is a pull-through cache for container images: a registry
// mirror that containerd, CRI-O, podman and dockerd can use for every
// registry at once. It is the composition root: flags and environment
// (kong; the flags themselves and the Config they make are in
// cmd/internal/daemon, which the benchmark's command shares), logging,
// wiring of upstream → tier → server, signals. The benchmark is a command
// of its own, cmd/cacheyd-bench, so that this one links neither it nor the
// test registry it runs against.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// cli is the command line. Every flag has a CACHEYD_* environment twin
// (kong.DefaultEnvars); a command line flag wins over its variable.
// The serve flags sit at the top level so that "cacheyd --help" shows them.
type cli struct {
	serveFlags `embed:""`

	Serve   serveCmd   `cmd:"" default:"withargs" help:"Serve the cache (the default when no command is given)."`
	Version versionCmd `cmd:"" help:"Print the version and exit."`
	Warm    warmCmd    `cmd:"" help:"Pull images through a running cacheyd before a scale-up (cacheyd warm IMAGE... or --file list.txt)."`
	Node    nodeCmd    `cmd:"" help:"Point this node's containerd at cacheyd (hosts.toml in its certs.d), --check that it did, or --remove it."`
}

func main() {
	var c cli
	parser, err := newParser(&c)
	if err != nil {
		panic(err) // a malformed struct tag: a bug, caught by the tests
	}
	ctx, err := parser.Parse(os.Args[1:])
	parser.FatalIfErrorf(err)
	if err := ctx.Run(&c.serveFlags); err != nil {
		fmt.Fprintln(os.Stderr, "cacheyd:", err)
		os.Exit(1)
	}
}

// newParser builds the command line parser for c.
func newParser(c *cli, options ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.Name("cacheyd"),
		kong.Description("A pull-through cache for container images: point containerd's hosts.toml at it and every node pulls each blob from upstream once."),
		kong.DefaultEnvars("CACHEYD"),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, FlagsLast: true}),
	}, options...)...)
}
