package flight

import (
	"fmt"
	"os"
)

// reopen opens f's file again, by its descriptor, as a new open file with an
// offset of its own; it works after the file was renamed or removed.
func reopen(f *os.File) (*os.File, error) {
	g, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("flight: open the pending file again: %w", err)
	}
	return g, nil
}
