package node

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// Version is containerd's major and minor version; the zero value means
// not known.
type Version struct {
	Major, Minor int
}

// HasDefault reports whether containerd v reads certs.d/_default
// (1.7 and later).
func (v Version) HasDefault() bool {
	return v.Major > 1 || v.Major == 1 && v.Minor >= 7
}

// Known reports whether v was given or found.
func (v Version) Known() bool { return v != Version{} }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// versionRE finds the first dotted version in what containerd --version
// prints, whichever distribution built it:
// "containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7",
// "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1",
// "containerd containerd.io 1.7.27 05044ec".
var versionRE = regexp.MustCompile(`(?:^|[\s/])v?(\d+)\.(\d+)(?:\.\d+)?`)

// ParseVersion reads a version from "1.6", "v2.1.4" or the output of
// containerd --version.
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("containerd version %q: no MAJOR.MINOR in it", s)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major == 0 {
		return Version{}, fmt.Errorf("containerd version %q: no containerd before 1.0 reads hosts.toml", s)
	}
	return Version{Major: major, Minor: minor}, nil
}

// DetectVersion runs the containerd binary found on PATH (or at binary,
// when not empty) with --version and reads its version.
func DetectVersion(ctx context.Context, binary string) (Version, error) {
	if binary == "" {
		binary = "containerd"
	}
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return Version{}, fmt.Errorf("containerd version: %s --version: %w (give --containerd-version)", binary, err)
	}
	return ParseVersion(string(out))
}
