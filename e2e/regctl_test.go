//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheyd/cacheyd/internal/loopback"
	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// regctlEnv names the regctl binary (.ci/run installs it and sets it);
// without it, regctl is looked for on PATH.
const regctlEnv = "CACHEYD_REGCTL"

// regctl runs regclient's command line client for one test: confined to
// loopback, with a home and a configuration file of its own, so that no
// configuration or credential of the machine's is read or written.
type regctl struct {
	path    string
	confine *loopback.Confinement
	env     []string
}

// newRegctl finds regctl, skipping t when it is missing, or failing it
// under CI=true.
func newRegctl(t *testing.T) *regctl {
	t.Helper()
	program := os.Getenv(regctlEnv)
	if program == "" {
		program = "regctl"
	}
	path := loopback.Need(t, program, "install it with go install github.com/regclient/regclient/cmd/regctl@v0.11.7 and name it in "+regctlEnv)
	dir := t.TempDir()
	confine, err := loopback.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := loopback.CleanEnv(
		"HOME="+dir,
		"REGCTL_CONFIG="+filepath.Join(dir, "regctl.json"),
		"DOCKER_CONFIG="+filepath.Join(dir, "docker"), // no credentials of the machine's
	)
	return &regctl{path: path, confine: confine, env: env}
}

// run runs regctl with args, bounded by two minutes and t's context, and
// fails t with its output if it fails; it returns its stdout.
func (r *regctl) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := r.confine.Command(ctx, r.path, args...)
	cmd.Env = r.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("regctl %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestRegctlThroughCacheyd: regctl, told that cacheyd is the loopback
// registry's mirror (regctl registry set --mirror), copies an image into
// an OCI layout directory through cacheyd, which is named the registry by
// the ns= regctl sends itself. Every manifest and blob comes from cacheyd,
// the registry hears only from cacheyd, and a second copy into a fresh
// directory costs the registry no blob.
func TestRegctlThroughCacheyd(t *testing.T) {
	rc := newRegctl(t)
	up := registrytest.New(t, registrytest.Options{Token: true, Redirect: true})
	im := seedImage(t, up, "e2e/regctl", "v1", 2, 100<<10)
	up.Reset()
	seen := watchAgents(up)
	cy := startCacheyd(t, buildCacheyd(t), "--cache-dir", t.TempDir(),
		"--registry-url", up.Host()+"="+up.URL(), "--allow-registry", up.CDNHost())

	// Plain HTTP to cacheyd. The registry keeps regctl's default, TLS,
	// so a fallback to it could not even speak to the test registry
	// (and would show by regctl's User-Agent below); --skip-check, as
	// regctl's check of it would fail for the same reason.
	rc.run(t, "registry", "set", cy.addr, "--tls", "disabled")
	rc.run(t, "registry", "set", up.Host(), "--mirror", cy.addr, "--skip-check")

	// copyOut copies the image into a fresh OCI layout, checks every
	// object there by its digest, and returns the log's mark from before.
	copyOut := func(t *testing.T) int {
		t.Helper()
		out := filepath.Join(t.TempDir(), "layout")
		mark := cy.log.mark()
		rc.run(t, "image", "copy", im.ref, "ocidir://"+out+":v1")
		for _, d := range im.digests() {
			checkCopied(t, filepath.Join(out, "blobs", "sha256", hexOf(t, d)), d)
		}
		return mark
	}

	mark := copyOut(t)
	lines, ok := cy.log.waitAccess(mark, 10*time.Second, func(lines []accessLine) bool {
		for _, d := range im.blobs {
			if gets(lines, im, shortDigest(d)) == 0 {
				return false
			}
		}
		return gets(lines, im, "v1")+gets(lines, im, shortDigest(im.manifest)) > 0
	})
	if !ok {
		t.Fatalf("cacheyd served not every object of %s to regctl:\n%s", im.ref, formatAccess(lines))
	}
	if n := gets(lines, im, "v1") + gets(lines, im, shortDigest(im.manifest)); n != 1 {
		t.Errorf("cacheyd served the manifest of %s %d times, want 1:\n%s", im.ref, n, formatAccess(lines))
	}
	for _, d := range im.blobs {
		if n := gets(lines, im, shortDigest(d)); n != 1 {
			t.Errorf("cacheyd served blob %s %d times, want 1:\n%s", d, n, formatAccess(lines))
		}
	}
	checkNamedByNs(t, lines, im)
	if total := checkAllFromCacheyd(t, seen); total == 0 {
		t.Error("the registry saw no request at all: the image came from somewhere else")
	}
	for _, d := range im.blobs {
		if n := up.Count("GET", registrytest.KindBlob, d); n != 1 {
			t.Errorf("the registry saw %d GETs of blob %s, want 1:%s", n, d, describe(up.Requests()))
		}
	}

	t.Run("second copy", func(t *testing.T) {
		up.Reset()
		seen.reset()
		mark := copyOut(t)
		lines, ok := cy.log.waitAccess(mark, 10*time.Second, func(lines []accessLine) bool {
			for _, d := range im.blobs {
				if gets(lines, im, shortDigest(d)) == 0 {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("cacheyd served not every blob of %s to the second copy:\n%s", im.ref, formatAccess(lines))
		}
		checkNamedByNs(t, lines, im)
		checkAllFromCacheyd(t, seen)
		for _, d := range im.blobs {
			if n := up.Count("GET", registrytest.KindBlob, d); n != 0 {
				t.Errorf("the registry saw %d GETs of blob %s on the second copy, want 0:%s", n, d, describe(up.Requests()))
			}
		}
	})
}

// checkNamedByNs fails t unless every access line about an image names
// im's registry and repository: the mirror's paths carry no registry, so
// only the ns= regctl sent can have named it.
func checkNamedByNs(t *testing.T, lines []accessLine, im image) {
	t.Helper()
	for _, l := range lines {
		if l.Registry == "" && l.Repository == "" {
			continue // GET /v2/, which names no registry
		}
		if l.Registry != im.registry || l.Repository != im.repo {
			t.Errorf("cacheyd logged %s %s for registry %q, repository %q, want %q, %q", l.Method, l.Reference, l.Registry, l.Repository, im.registry, im.repo)
		}
	}
}
