package main

import (
	"fmt"
	"runtime"

	"github.com/cacheyd/cacheyd/cmd/internal/daemon"
)

type versionCmd struct{}

func (versionCmd) Run(*serveFlags) error {
	fmt.Printf("cacheyd %s (%s, %s/%s)\n", daemon.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
