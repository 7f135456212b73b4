package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfileBuildsForTheTargetPlatform: with no Docker engine at hand,
// the Dockerfile is read for what a multi-platform build
// (docker buildx build --platform linux/amd64,linux/arm64) needs: the
// build stage on the builder's platform, cross-compiling a static binary
// for TARGETOS/TARGETARCH, and a final stage that is not pinned to one
// platform; the image the chart and manifests pull runs as the non-root
// user they expect.
func TestDockerfileBuildsForTheTargetPlatform(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Continuation lines joined, comments dropped: one instruction a line.
	text := strings.ReplaceAll(string(src), "\\\n", " ")
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var froms []string
	args := map[string]bool{}
	for _, l := range lines {
		switch f := strings.Fields(l); strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, l)
		case "ARG":
			for _, a := range f[1:] {
				name, _, _ := strings.Cut(a, "=")
				args[name] = true
			}
		}
	}
	if len(froms) != 2 {
		t.Fatalf("want a build stage and a final stage, got FROM lines %q", froms)
	}
	if !strings.HasPrefix(froms[0], "FROM --platform=$BUILDPLATFORM ") {
		t.Errorf("build stage %q does not run on $BUILDPLATFORM", froms[0])
	}
	if strings.Contains(froms[1], "--platform") {
		t.Errorf("final stage %q is pinned to a platform; it must follow the target", froms[1])
	}
	for _, a := range []string{"TARGETOS", "TARGETARCH"} {
		if !args[a] {
			t.Errorf("the build stage does not declare ARG %s", a)
		}
	}
	build := regexp.MustCompile(`CGO_ENABLED=0 GOOS=\$\{?TARGETOS\}? GOARCH=\$\{?TARGETARCH\}? +go build `)
	found := false
	for _, l := range lines {
		found = found || build.MatchString(l)
	}
	if !found {
		t.Errorf("no RUN builds with CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build")
	}
	if !slices.Contains(lines, "USER 65532:65532") {
		t.Errorf("the image does not run as 65532:65532, the user the manifests set")
	}
}
