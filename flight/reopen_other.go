//go:build !linux

package flight

import (
	"errors"
	"os"
)

// reopen is not available here: readers read instead of sending the file.
func reopen(*os.File) (*os.File, error) { return nil, errors.ErrUnsupported }
