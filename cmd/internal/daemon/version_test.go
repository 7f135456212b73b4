package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestReleaseBuildsSetTheVersion: the builds that ship set version with
// -X, which names the variable by its package's path and is silently
// ignored when the path is wrong (the binary would call itself "dev").
func TestReleaseBuildsSetTheVersion(t *testing.T) {
	_ = version // the variable -X sets is this one
	want := "-X " + reflect.TypeFor[Flags]().PkgPath() + ".version="
	setting := regexp.MustCompile(`-X [^ =]+=`)
	for _, f := range []string{"Dockerfile", ".github/workflows/release.yml", ".ci/release-checks"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if n, ok := len(setting.FindAllString(s, -1)), strings.Count(s, want); ok == 0 || n != ok {
			t.Errorf("%s: %d of its %d -X flags set %q", f, ok, n, want)
		}
	}
}
