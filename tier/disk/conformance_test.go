package disk

import (
	"testing"

	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/tiertest"
)

func TestConformance(t *testing.T) {
	tiertest.Run(t, tiertest.Options{
		New: func(t *testing.T) tier.Tier { return newTestDisk(t, t.TempDir(), 0) },
		Reopen: func(t *testing.T, old tier.Tier) tier.Tier {
			d := old.(*Disk)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			return newTestDisk(t, d.dir, 0)
		},
	})
}

func newTestDisk(t testing.TB, dir string, budget int64) *Disk {
	t.Helper()
	d, err := Open(Config{Dir: dir, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	<-d.Loaded()
	return d
}
