package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/server"
	"github.com/cacheyd/cacheyd/upstream"
)

// TestPullBudgetsShowTheNewestReading: each registry's row is the newest
// reading, this replica's own or the newest a member stated, with who saw
// it and this replica's own hold; an own reading wins a tie, and a heard
// one overtaken by a newer one is kept out.
func TestPullBudgetsShowTheNewestReading(t *testing.T) {
	t0 := time.Unix(1_765_158_000, 0)
	held := t0.Add(time.Hour)
	budget := func(remaining int64, seen time.Time) peerauth.Budget {
		return peerauth.Budget{Limit: 100, Remaining: remaining, Window: 6 * time.Hour, Seen: seen}
	}
	heard := &heardBudgets{}
	heard.hear("docker.io", "10.0.0.2:30123", budget(70, t0.Add(2*time.Second)))
	heard.hear("docker.io", "10.0.0.3:30123", budget(80, t0.Add(time.Second))) // overtaken: older
	heard.hear("ghcr.io", "10.0.0.2:30123", budget(50, t0))
	heard.hear("quay.io", "10.0.0.3:30123", budget(40, t0))
	heard.hear("quay.io", "10.0.0.2:30123", budget(39, t0)) // as new: the later answer
	own := []upstream.Budget{
		{Registry: "docker.io", Limit: 100, Remaining: 75, Window: 6 * time.Hour, Seen: t0, HeldUntil: held},
		{Registry: "ghcr.io", Limit: 100, Remaining: 60, Window: 6 * time.Hour, Seen: t0},
		{Registry: "registry.k8s.io", Limit: 100, Remaining: 99, Seen: t0},
	}
	want := []server.PullBudget{
		{Registry: "docker.io", Limit: 100, Remaining: 70, Window: 6 * time.Hour, Seen: t0.Add(2 * time.Second), HeldUntil: held, SeenBy: "10.0.0.2:30123"},
		{Registry: "ghcr.io", Limit: 100, Remaining: 60, Window: 6 * time.Hour, Seen: t0},
		{Registry: "quay.io", Limit: 100, Remaining: 39, Window: 6 * time.Hour, Seen: t0, SeenBy: "10.0.0.2:30123"},
		{Registry: "registry.k8s.io", Limit: 100, Remaining: 99, Seen: t0},
	}
	if diff := cmp.Diff(want, pullBudgets(own, heard)); diff != "" {
		t.Errorf("pullBudgets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1:2], pullBudgets(own[1:2], nil)); diff != "" {
		t.Errorf("pullBudgets with nothing heard (-want +got):\n%s", diff)
	}
}

// TestHeardBudgetsAreBounded: registry names come from clients; past
// maxHeardBudgets registries a new one is not kept, a known one still is.
func TestHeardBudgetsAreBounded(t *testing.T) {
	heard := &heardBudgets{}
	seen := time.Unix(1_765_158_000, 0)
	for i := range maxHeardBudgets + 5 {
		heard.hear(fmt.Sprintf("r%d.example", i), "10.0.0.2:30123", peerauth.Budget{Limit: 10, Remaining: 5, Seen: seen})
	}
	heard.hear("r0.example", "10.0.0.3:30123", peerauth.Budget{Limit: 10, Remaining: 4, Seen: seen.Add(time.Second)})
	got := heard.copy()
	if len(got) != maxHeardBudgets || got["r0.example"].budget.Remaining != 4 {
		t.Errorf("%d registries kept, r0.example %+v; want %d, the newer reading", len(got), got["r0.example"], maxHeardBudgets)
	}
}
