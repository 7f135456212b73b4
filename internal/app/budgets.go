package app

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/internal/peerauth"
	"github.com/cacheyd/cacheyd/server"
	"github.com/cacheyd/cacheyd/upstream"
)

// In a cluster, the owner of a manifest spends the registry's budget for
// it, and a replica that asked the owner never hears from the registry
// itself. The owner states the budget it last read on its answer
// (server.Config.PeerBudget); the replica that asked keeps, per registry,
// the newest a member stated (cluster.Config.Heard), and shows the newer
// of that and its own reading, with who saw it. What is heard is shown
// only: holds, the reserve of a fallback and the metrics are this
// replica's own reading.

// maxHeardBudgets bounds how many registries' heard budgets are kept:
// registry names come from clients.
const maxHeardBudgets = 128

// heardBudget is a budget a member stated, and that member's address.
type heardBudget struct {
	member string
	budget peerauth.Budget
}

// heardBudgets are the budgets the members this replica asked stated: per
// registry, the newest by the time its member read it.
type heardBudgets struct {
	mu    sync.Mutex             // guards byReg
	byReg map[string]heardBudget // canonical registry name → newest heard
}

// hear keeps b, stated by member for registry, if it is the newest heard.
func (h *heardBudgets) hear(registry, member string, b peerauth.Budget) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur, ok := h.byReg[registry]
	switch {
	case ok && b.Seen.Before(cur.budget.Seen):
		return // an answer that overtook a newer one
	case !ok && len(h.byReg) >= maxHeardBudgets:
		return
	case h.byReg == nil:
		h.byReg = make(map[string]heardBudget)
	}
	h.byReg[registry] = heardBudget{member: member, budget: b}
}

// copy returns the budgets heard, by registry.
func (h *heardBudgets) copy() map[string]heardBudget {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]heardBudget, len(h.byReg))
	for reg, hb := range h.byReg {
		out[reg] = hb
	}
	return out
}

// pullBudgets are the registries' budgets as the status page shows them:
// each registry's newest reading, this replica's own (own) or one a member
// stated (heard; nil for none), and this replica's own hold.
func pullBudgets(own []upstream.Budget, heard *heardBudgets) []server.PullBudget {
	var other map[string]heardBudget
	if heard != nil {
		other = heard.copy()
	}
	out := make([]server.PullBudget, 0, len(own)+len(other))
	for _, b := range own {
		pb := server.PullBudget{Registry: b.Registry, Limit: b.Limit, Remaining: b.Remaining, Window: b.Window, Seen: b.Seen, HeldUntil: b.HeldUntil}
		if hb, ok := other[b.Registry]; ok {
			if hb.budget.Seen.After(b.Seen) {
				pb = heardRow(b.Registry, hb, b.HeldUntil)
			}
			delete(other, b.Registry)
		}
		out = append(out, pb)
	}
	for reg, hb := range other {
		out = append(out, heardRow(reg, hb, time.Time{}))
	}
	slices.SortFunc(out, func(x, y server.PullBudget) int { return strings.Compare(x.Registry, y.Registry) })
	return out
}

// heardRow is the status page's row of a budget heard from a member, with
// this replica's own hold.
func heardRow(registry string, hb heardBudget, held time.Time) server.PullBudget {
	b := hb.budget
	return server.PullBudget{Registry: registry, Limit: b.Limit, Remaining: b.Remaining, Window: b.Window, Seen: b.Seen,
		HeldUntil: held, SeenBy: hb.member}
}

// peerBudget is the budget up last read from a registry itself, as the
// server states it to the members it answers.
func peerBudget(up *upstream.Client) func(registry string) (peerauth.Budget, bool) {
	return func(registry string) (peerauth.Budget, bool) {
		b, ok := up.Budget(registry)
		if !ok {
			return peerauth.Budget{}, false
		}
		return peerauth.Budget{Limit: b.Limit, Remaining: b.Remaining, Window: b.Window.Truncate(time.Second), Seen: b.Seen.Truncate(time.Second)}, true
	}
}
