package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Remove removes every hosts.toml below certsDir that cacheyd wrote,
// whatever registries or version it was written for, and each directory
// cacheyd made for one, when nothing else is left in it. Files of anyone
// else are not read beyond their first lines and never touched.
func Remove(certsDir string) ([]File, error) {
	if certsDir == "" {
		certsDir = DefaultCertsDir
	}
	entries, err := os.ReadDir(certsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs dir: %w", err)
	}
	var files []File
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(certsDir, e.Name())
		path := filepath.Join(dir, FileName)
		content, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) || err == nil && !isOurs(content) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", path, err))
			continue
		}
		if err := os.Remove(path); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", path, err))
			continue
		}
		f := File{Path: path, Action: Removed}
		if madeDir(content) {
			// os.Remove fails on a directory that is not empty: what
			// someone else put there keeps it.
			f.DirRemoved = os.Remove(dir) == nil
		}
		if err := syncDir(certsDir); err != nil {
			errs = append(errs, err)
		}
		files = append(files, f)
	}
	return files, errors.Join(errs...)
}
