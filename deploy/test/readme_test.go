package deploytest

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeBuildsAStaticBinary runs the build command the README gives
// under "Building the binary", as written but for where the binary goes,
// and checks that what it builds is static: no program interpreter and no
// shared library, so it runs on any Linux of its architecture.
func TestReadmeBuildsAStaticBinary(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Building the binary\n\n```sh\n(.*?)```").FindSubmatch(src)
	if m == nil {
		t.Fatal("README.md has no sh block under \"### Building the binary\"")
	}
	var line string
	for _, l := range strings.Split(string(m[1]), "\n") {
		if strings.Contains(l, "go build") {
			line, _, _ = strings.Cut(l, "#")
		}
	}
	fields := strings.Fields(line)
	var env []string
	for len(fields) > 0 && strings.Contains(fields[0], "=") {
		env, fields = append(env, fields[0]), fields[1:]
	}
	if len(fields) < 2 || fields[0] != "go" || fields[1] != "build" {
		t.Fatalf("README's build command %q is not a go build", line)
	}
	out := filepath.Join(t.TempDir(), "cacheyd")
	args := fields[1:]
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s builds a dynamic binary (it names a program interpreter)", line)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s builds a binary needing %v (%v)", line, libs, err)
	}
}
