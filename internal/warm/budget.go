package warm

import (
	"context"
	"net/http"
	"slices"
)

// Budget is one registry's pull budget as cacheyd last read it from the
// registry's ratelimit headers.
type Budget struct {
	Registry string
	// Remaining and Limit are the pulls left in the window and the pulls
	// a window allows.
	Remaining, Limit int64
}

// costOf is the counted pulls between before and after for the registries
// of images (-1 if the counter went down: cacheyd restarted), and the
// budgets after for those registries that announced one.
func costOf(before, after *snapshot, images []Image) (int64, []Budget) {
	var regs []string
	for _, im := range images {
		if !slices.Contains(regs, im.Registry) {
			regs = append(regs, im.Registry)
		}
	}
	pulls := int64(-1)
	if a, b := after.pullsOf(regs, before), before.pullsOf(regs, before); a >= b {
		pulls = int64(a - b)
	}
	var budgets []Budget
	for _, r := range regs {
		limit, ok := after.limit[r]
		if !ok {
			continue
		}
		budgets = append(budgets, Budget{Registry: r, Remaining: int64(after.remaining[r]), Limit: int64(limit)})
	}
	return pulls, budgets
}

// budgetAfter reads /metrics again and returns costOf since before; -1 and
// no budgets when either read failed.
func budgetAfter(ctx context.Context, client *http.Client, base string, before *snapshot, beforeErr error, images []Image) (int64, []Budget) {
	if beforeErr != nil {
		return -1, nil
	}
	after, err := scrape(ctx, client, base)
	if err != nil {
		return -1, nil
	}
	return costOf(before, after, images)
}
