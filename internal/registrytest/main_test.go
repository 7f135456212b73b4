package registrytest

import (
	"testing"

	"go.uber.org/goleak"
)

// Every server, connection and held request ends when a test's registry
// closes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
