package memory

import (
	"testing"

	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/tiertest"
)

func TestConformance(t *testing.T) {
	tiertest.Run(t, tiertest.Options{
		New: func(t *testing.T) tier.Tier {
			m, err := New(Config{Bytes: 64 << 20, MaxObject: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			return m
		},
	})
}
