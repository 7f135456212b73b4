package warm

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCostOf: the pulls of the registries warmed, "other" too while one of
// them had no label of its own yet, and the budgets of those that have one.
func TestCostOf(t *testing.T) {
	images := []Image{{Registry: "docker.io"}, {Registry: "ghcr.io"}, {Registry: "docker.io"}}
	snap := func(labelled []string, pulls map[string]float64) *snapshot {
		s := &snapshot{pulls: pulls, labelled: map[string]bool{}, remaining: map[string]float64{"docker.io": 90}, limit: map[string]float64{"docker.io": 100}}
		for _, r := range labelled {
			s.labelled[r] = true
		}
		return s
	}
	tests := []struct {
		name          string
		before, after *snapshot
		want          int64
	}{
		{"labelled", snap([]string{"docker.io", "ghcr.io"}, map[string]float64{"docker.io": 3, "other": 5}),
			snap([]string{"docker.io", "ghcr.io"}, map[string]float64{"docker.io": 5, "ghcr.io": 1, "quay.io": 4, "other": 9}), 3},
		{"ghcr.io not yet labelled", snap([]string{"docker.io"}, map[string]float64{"docker.io": 3, "other": 5}),
			snap([]string{"docker.io", "ghcr.io"}, map[string]float64{"docker.io": 5, "ghcr.io": 1, "other": 6}), 4},
		{"restarted", snap([]string{"docker.io", "ghcr.io"}, map[string]float64{"docker.io": 3}),
			snap(nil, map[string]float64{"docker.io": 1}), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pulls, budgets := costOf(tt.before, tt.after, images)
			if pulls != tt.want {
				t.Errorf("pulls = %d, want %d", pulls, tt.want)
			}
			if diff := cmp.Diff([]Budget{{Registry: "docker.io", Remaining: 90, Limit: 100}}, budgets); diff != "" {
				t.Errorf("budgets (-want +got):\n%s", diff)
			}
		})
	}
}
