package daemon

import "runtime/debug"

// version is set at build time with
// -ldflags "-X github.com/cacheyd/cacheyd/cmd/internal/daemon.version=v1.2.3";
// a plain go build reports the module version or the VCS revision instead.
var version = ""

// Version is what cacheyd calls itself (its status page, its User-Agent
// upstream, "cacheyd version"): the release version, else what the Go
// build recorded.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}
