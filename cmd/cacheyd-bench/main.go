// Command cacheyd-bench is cacheyd's burst-scaling benchmark (package
// bench): bursts of simulated nodes pull an image set through cacheyd
// from a fake Docker Hub on loopback. It is a command of its own so that
// cacheyd does not ship the harness and the in-process test registry it
// seeds. Its in-process cacheyd takes every flag cacheyd takes
// (package daemon), beside the benchmark's own; see bench/README.md.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"

	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
)

// cli is the command line: the benchmark's flags (CACHEYD_BENCH_*), then
// cacheyd's own (CACHEYD_*, kong.DefaultEnvars) for the cacheyd it starts;
// a command line flag wins over its variable.
type cli struct {
	benchFlags   `embed:""`
	daemon.Flags `embed:""`
}

func main() {
	var c cli
	parser, err := newParser(&c)
	if err != nil {
		panic(err) // a malformed struct tag: a bug, caught by the tests
	}
	_, err = parser.Parse(os.Args[1:])
	parser.FatalIfErrorf(err)
	if err := c.run(&c.Flags); err != nil {
		fmt.Fprintln(os.Stderr, "cacheyd-bench:", err)
		os.Exit(1)
	}
}

// newParser builds the command line parser for c. cacheyd's --alternate
// REGISTRY=URL is left out: the only registry the in-process cacheyd
// fetches is the fake upstream, whose alternate the benchmark starts
// itself with its own --alternate. So is the bucket cacheyd names
// (--s3-bucket, --s3-endpoint, --s3-region, --s3-prefix, --s3-path-style):
// only the restart scenario's replicas name one, the benchmark's own
// (--s3 or --s3-versitygw), so that every other burst starts cold; its
// --s3-timeout stays.
func newParser(c *cli, options ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.IgnoreFields(`^cli\.Alternate$`, `^cli\.S3(Bucket|Endpoint|Region|Prefix|PathStyle)$`),
		kong.Name("cacheyd-bench"),
		kong.Description("Measure node bursts pulling through cacheyd against a fake Docker Hub on loopback (see bench/README.md). cacheyd's own flags set up the cacheyd it starts for each burst."),
		kong.DefaultEnvars("CACHEYD"),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, FlagsLast: true}),
	}, options...)...)
}
