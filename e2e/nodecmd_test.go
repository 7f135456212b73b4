//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/containerdtest"
	"github.com/cacheyd/cacheyd/internal/loopback"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// crictlEnv names the crictl binary (.ci/run installs it and sets it);
// without it, crictl is looked for on PATH.
const crictlEnv = "CACHEYD_CRICTL"

// crictl finds crictl, skipping t when it is missing, or failing it under
// CI=true.
func crictl(t *testing.T) string {
	t.Helper()
	program := os.Getenv(crictlEnv)
	if program == "" {
		program = "crictl"
	}
	return loopback.Need(t, program, "install it with go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0 and name it in "+crictlEnv)
}

// TestNodeCommandThroughCRI is the kubelet's path into containerd, on
// containerd 1.6 and 2 with the CRI plugin on: cacheyd node writes the
// node's hosts.toml, crictl pull is served by cacheyd (each of the
// image's objects one GET there); cacheyd node --remove takes its files
// away, and the same pull goes to the registry without a request to
// cacheyd. A hosts.toml someone else wrote stays byte for byte.
func TestNodeCommandThroughCRI(t *testing.T) {
	crictlBin := crictl(t)
	for _, tt := range []struct {
		name string
		bin  func(testing.TB) string // containerd's directory, "" for PATH
	}{
		{name: "containerd 1.6", bin: func(testing.TB) string { return "" }},
		{name: "containerd 2", bin: containerdtest.V2Bin},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testNodeCommand(t, crictlBin, tt.bin(t))
		})
	}
}

func testNodeCommand(t *testing.T, crictlBin, containerdBin string) {
	up := registrytest.New(t, registrytest.Options{})
	im := seedImage(t, up, "e2e/node", "v1", 2, 64<<10)
	bin := buildCacheyd(t)
	cy := startCacheyd(t, bin, "--cache-dir", t.TempDir(), "--registry-url", up.Host()+"="+up.URL())

	certs := t.TempDir()
	// Someone else's file: a registry of their own, sent to cacheyd by
	// hand, which neither configure nor remove may touch.
	foreign := filepath.Join(certs, "registry.example", "hosts.toml")
	foreignContent := []byte("server = \"https://registry.example\"\n\n[host.\"" + cy.url() + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
	if err := os.MkdirAll(filepath.Dir(foreign), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, foreignContent, 0o644); err != nil {
		t.Fatal(err)
	}
	node := containerdtest.StartWith(t, containerdtest.Config{Namespace: "k8s.io", Bin: containerdBin, HostsDir: certs, CRI: true})
	nodeArgs := []string{"node", "--certs-dir", certs, "--mirror", cy.url(), "--containerd-version", map[int]string{1: "1.6", 2: "2.4"}[node.Major], "--containerd-socket", node.Address}
	if node.Major == 1 {
		nodeArgs = append(nodeArgs, "--registries", up.Host())
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := command(t, bin, args...)
		if err != nil {
			t.Fatalf("cacheyd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	crictlPull := func() {
		t.Helper()
		if out, err := command(t, crictlBin, "--runtime-endpoint", node.CRIEndpoint(), "--image-endpoint", node.CRIEndpoint(), "pull", im.ref); err != nil {
			t.Fatalf("crictl pull %s: %v\n%s", im.ref, err, out)
		}
	}

	t.Log(run(nodeArgs...))
	t.Log(run(append(nodeArgs, "--check")...))
	mark := cy.log.mark()
	crictlPull()
	lines, ok := cy.log.waitAccess(mark, 10*time.Second, func(lines []accessLine) bool {
		for _, d := range im.digests() {
			if gets(lines, im, shortDigest(d)) == 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("cacheyd served not every object of %s to crictl pull:\n%s", im.ref, formatAccess(lines))
	}
	for _, d := range im.digests() {
		if n := gets(lines, im, shortDigest(d)); n != 1 {
			t.Errorf("cacheyd served %s %d times, want 1:\n%s", d, n, formatAccess(lines))
		}
	}

	t.Log(run("node", "--remove", "--certs-dir", certs))
	if out, err := command(t, bin, append(nodeArgs, "--check")...); err == nil {
		t.Errorf("cacheyd node --check after --remove exits 0:\n%s", out)
	}
	if out, err := command(t, crictlBin, "--runtime-endpoint", node.CRIEndpoint(), "--image-endpoint", node.CRIEndpoint(), "rmi", im.ref); err != nil {
		t.Fatalf("crictl rmi: %v\n%s", err, out)
	}
	up.Reset()
	mark = cy.log.mark()
	crictlPull()
	// The only request --check sends, GET /v2/, names no registry and
	// may be logged after the mark.
	var ofImage []accessLine
	for _, l := range cy.log.access(mark) {
		if l.Registry != "" || l.Repository != "" {
			ofImage = append(ofImage, l)
		}
	}
	if len(ofImage) != 0 {
		t.Errorf("cacheyd saw %d requests for %s after --remove, want 0:\n%s", len(ofImage), im.ref, formatAccess(ofImage))
	}
	if n := up.Count("GET", registrytest.KindManifest, im.manifest) + up.Count("GET", registrytest.KindManifest, "v1"); n == 0 {
		t.Errorf("the registry saw no GET of %s's manifest after --remove:%s", im.ref, describe(up.Requests()))
	}

	var left []string
	err := filepath.WalkDir(certs, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return err
	})
	if err != nil || len(left) != 1 || left[0] != foreign {
		t.Errorf("left in %s: %v (%v), want only %s", certs, left, err, foreign)
	}
	if got, err := os.ReadFile(foreign); err != nil || !bytes.Equal(got, foreignContent) {
		t.Errorf("%s changed: %q, %v", foreign, got, err)
	}
}

// gets counts the successful GETs of ref of im in lines.
func gets(lines []accessLine, im image, ref string) int {
	n := 0
	for _, l := range lines {
		if l.Method == "GET" && l.Status == 200 && l.Registry == im.registry && l.Repository == im.repo && l.Reference == ref {
			n++
		}
	}
	return n
}

// command runs program with args, bounded by t, and returns its combined
// output.
func command(t *testing.T, program string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, program, args...).CombinedOutput()
	return string(out), err
}
