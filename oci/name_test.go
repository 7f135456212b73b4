package oci

import (
	"regexp"
	"strings"
	"testing"
)

// The spec's expressions, as the reference ValidName and ValidTag must
// agree with.
var (
	specName = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	specTag  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

var nameSamples = []string{
	"a", "library/alpine", "a.b", "a_b", "a__b", "a___b", "a-b", "a--b", "a-.b", "a._b", "a.", ".a",
	"a/", "/a", "a//b", "A", "a/B", "a..b", "grafana/loki", "x/y/z-1_2.3", "a-", "-a", "_a", "a_",
	"ab__cd__ef", "a.b.c", "a-_b", "a_-b", "0", "9z", "a b", "a%2fb", "..", "a/..", "a/./b",
}

func TestValidNameMatchesTheSpec(t *testing.T) {
	for _, s := range append(nameSamples, strings.Repeat("a", 255), strings.Repeat("a", 256)) {
		want := len(s) <= MaxNameLength && specName.MatchString(s)
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v, spec says %v", s, got, want)
		}
	}
}

func TestValidTagMatchesTheSpec(t *testing.T) {
	for _, s := range []string{"", "latest", "v1.2.3", "_x", ".x", "-x", "x-", "x.", "A_b-C.d", "a b", "a:b",
		strings.Repeat("a", 128), strings.Repeat("a", 129)} {
		if got, want := ValidTag(s), specTag.MatchString(s); got != want {
			t.Errorf("ValidTag(%q) = %v, spec says %v", s, got, want)
		}
	}
}

// FuzzValidName checks the hand-written grammar against the spec's
// expressions for names and tags.
func FuzzValidName(f *testing.F) {
	for _, s := range nameSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidName(s), len(s) <= MaxNameLength && specName.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, spec says %v", s, got, want)
		}
		if got, want := ValidTag(s), specTag.MatchString(s); got != want {
			t.Fatalf("ValidTag(%q) = %v, spec says %v", s, got, want)
		}
	})
}
