package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(oci.FromBytes(fmt.Appendf(nil, "object %d", i)))
	}
	return out
}

// TestRankIsAPermutationAndTheSameEverywhere: every member appears once,
// and the ranking does not depend on the order the members are listed in.
func TestRankIsAPermutationAndTheSameEverywhere(t *testing.T) {
	ms := []string{"10.0.0.1:30123", "10.0.0.2:30123", "10.0.0.3:30123", "10.0.0.4:30123"}
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	for _, k := range keys(200) {
		r := Rank(ms, k)
		if got := slices.Sorted(slices.Values(r)); !slices.Equal(got, ms) {
			t.Fatalf("Rank(%s) = %v: not a permutation of %v", k, r, ms)
		}
		if r2 := Rank(rev, k); !slices.Equal(r, r2) {
			t.Fatalf("Rank(%s) = %v listed one way, %v the other", k, r, r2)
		}
	}
}

// TestMembershipChangesMoveOnlyTheirKeys is the promise of rendezvous
// hashing: a member leaving moves exactly its own keys (each to the member
// ranked second), a member joining takes keys only for itself, and the
// relative order of the others never changes.
func TestMembershipChangesMoveOnlyTheirKeys(t *testing.T) {
	three := []string{"10.0.0.1:30123", "10.0.0.2:30123", "10.0.0.3:30123"}
	four := append(slices.Clone(three), "10.0.0.4:30123")
	gone, joined := 0, 0
	owned := map[string]int{}
	const n = 30000
	for _, k := range keys(n) {
		r3, r4 := Rank(three, k), Rank(four, k)
		owned[r3[0]]++
		// The fourth member joining: the owner changes only to it.
		if r4[0] != r3[0] {
			joined++
			if r4[0] != four[3] || r4[1] != r3[0] {
				t.Fatalf("key %s: owner %s with three members, %v with four: moved to an old member", k, r3[0], r4)
			}
		}
		// The others keep their order, with or without the fourth.
		without := slices.DeleteFunc(slices.Clone(r4), func(m string) bool { return m == four[3] })
		if !slices.Equal(without, r3) {
			t.Fatalf("key %s: %v with three, %v with four", k, r3, r4)
		}
		// The first member leaving: only its keys move, each to its second.
		r2 := Rank(three[1:], k)
		if r3[0] == three[0] {
			gone++
			if r2[0] != r3[1] {
				t.Fatalf("key %s: owner %s left, new owner %s, want its second %s", k, r3[0], r2[0], r3[1])
			}
		} else if r2[0] != r3[0] {
			t.Fatalf("key %s moved from %s to %s though %s left", k, r3[0], r2[0], three[0])
		}
	}
	// xxhash spreads keys evenly: each member owns a third, within a few
	// percent, and a fourth member takes a quarter.
	for m, c := range owned {
		if c < n*30/100 || c > n*37/100 {
			t.Errorf("%s owns %d of %d keys, want about a third", m, c, n)
		}
	}
	if joined < n*22/100 || joined > n*28/100 {
		t.Errorf("a fourth member took %d of %d keys, want about a quarter", joined, n)
	}
	if gone != owned[three[0]] {
		t.Errorf("%d keys moved when %s left, want its %d", gone, three[0], owned[three[0]])
	}
}

func TestKeyOf(t *testing.T) {
	dg := oci.FromBytes([]byte("x"))
	tests := []struct {
		req  oci.Request
		want string
	}{
		{oci.Request{Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/a", Reference: oci.Reference{Digest: dg}}, string(dg)},
		{oci.Request{Kind: oci.KindManifest, Registry: "ghcr.io", Repository: "b/c", Reference: oci.Reference{Digest: dg}}, string(dg)},
		{oci.Request{Kind: oci.KindManifest, Registry: "docker.io", Repository: "library/a", Reference: oci.Reference{Tag: "v1"}}, "docker.io/library/a:v1"},
	}
	for _, tt := range tests {
		if got := keyOf(&tt.req); got != tt.want {
			t.Errorf("keyOf(%+v) = %q, want %q", tt.req, got, tt.want)
		}
	}
}
