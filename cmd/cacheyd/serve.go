package main

import (
	"context"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
)

// serveFlags are cacheyd's flags, at the top level of its command line;
// the benchmark's command embeds the same ones (package daemon).
type serveFlags = daemon.Flags

// serveCmd is "cacheyd serve", the default command.
type serveCmd struct{}

// Run starts cacheyd and serves until SIGINT or SIGTERM.
func (serveCmd) Run(s *serveFlags) error {
	sink := newLogSink(os.Stderr)
	defer sink.Close()
	log, access := daemon.NewLogger(s.LogLevel, s.LogFormat, sink)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The listening line is what scripts and probes wait for: out at once.
	return s.Serve(ctx, log, access, func(net.Addr) { sink.Flush() })
}
