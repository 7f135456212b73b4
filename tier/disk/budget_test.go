package disk

import (
	"errors"
	"testing"

	"github.com/cacheyd/cacheyd/tier"
)

// TestReservationsKeepTheBudget: fills in flight reserve their size before
// writing, so committed plus reserved bytes never exceed the budget.
func TestReservationsKeepTheBudget(t *testing.T) {
	d, err := Open(Config{Dir: t.TempDir(), Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	<-d.Loaded()
	if err := d.reserve(600); err != nil {
		t.Fatal(err)
	}
	if err := d.reserve(400); err != nil {
		t.Fatal(err)
	}
	if err := d.reserve(1001); !errors.Is(err, tier.ErrNoRoom) {
		t.Fatalf("reserving more than the budget: %v, want tier.ErrNoRoom", err)
	}
	if err := d.reserve(1); !errors.Is(err, tier.ErrNoRoom) {
		t.Fatalf("reserving beyond the budget beside fills in flight: %v, want tier.ErrNoRoom", err)
	}
	d.unreserve(400)
	if _, _, reserved := d.Usage(); reserved != 600 {
		t.Errorf("reserved = %d, want 600", reserved)
	}
}

// TestClaimsFollowArrivedBytes: a pending file claims nothing for the size
// it was told to expect, claims in steps as bytes arrive (never past the
// announced size), may take at most half the budget, and claims of all
// pending files together never exceed the budget.
func TestClaimsFollowArrivedBytes(t *testing.T) {
	const budget = 64 << 20 // claims in whole 1 MiB steps
	d, err := Open(Config{Dir: t.TempDir(), Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	<-d.Loaded()
	reserved := func() int64 { _, _, r := d.Usage(); return r }
	if _, err := d.Create(budget/2 + 1); !errors.Is(err, tier.ErrNoRoom) {
		t.Fatalf("creating an object of more than half the budget: %v, want tier.ErrNoRoom", err)
	}
	p, err := d.Create(budget / 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	if r := reserved(); r != 0 {
		t.Fatalf("claimed %d for an announcement", r)
	}
	if err := p.Claim(100); err != nil {
		t.Fatal(err)
	}
	if r := reserved(); r != claimStep {
		t.Errorf("after 100 bytes: claimed %d, want one step of %d", r, claimStep)
	}
	if err := p.Claim(claimStep); err != nil { // 100 bytes into the next step
		t.Fatal(err)
	}
	if r := reserved(); r != 2*claimStep {
		t.Errorf("after a step and 100 bytes: claimed %d, want %d", r, 2*claimStep)
	}

	small, err := d.Create(claimStep + 10)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Abort()
	if err := small.Claim(claimStep + 5); err != nil {
		t.Fatal(err)
	}
	if r := reserved(); r != 2*claimStep+claimStep+10 {
		t.Errorf("a claim past the last step of a %d-byte object: %d claimed in all, want %d", claimStep+10, r, 3*claimStep+10)
	}

	unknown, err := d.Create(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer unknown.Abort()
	if err := unknown.Claim(budget/2 + 1); !errors.Is(err, tier.ErrNoRoom) {
		t.Errorf("an object of unknown size claiming more than half the budget: %v, want tier.ErrNoRoom", err)
	}
	if err := unknown.Claim(budget / 2); err != nil {
		t.Fatal(err)
	}
	// In flight now: 2 steps, 1 step and 10 bytes, and half the budget.
	other, err := d.Create(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Abort()
	if err := other.Claim(budget / 2); !errors.Is(err, tier.ErrNoRoom) {
		t.Errorf("claims beyond the budget beside the others': %v, want tier.ErrNoRoom", err)
	}
	if r := reserved(); r > budget {
		t.Errorf("claimed %d of a budget of %d", r, budget)
	}
}
