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
