package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Action is what Configure or Remove did with one file.
type Action string

// The actions, as --json spells them.
const (
	Written   Action = "written"   // created or rewritten (it was cacheyd's)
	Unchanged Action = "unchanged" // cacheyd's, already as it would be written
	Refused   Action = "refused"   // someone else's file is there: left as it is
	Removed   Action = "removed"   // cacheyd's, removed
)

// File is one hosts.toml Configure or Remove dealt with.
type File struct {
	Path   string `json:"path"`
	Action Action `json:"action"`
	// Detail says, for a refused file, what to do about it.
	Detail string `json:"detail,omitempty"`
	// DirRemoved says Remove also took away the directory cacheyd made.
	DirRemoved bool `json:"dir_removed,omitempty"`
}

// ErrForeign is wrapped by Configure's error when a directory to
// configure holds a hosts.toml cacheyd did not write.
var ErrForeign = errors.New("a hosts.toml cacheyd did not write is in the way")

// Configure writes cacheyd's hosts.toml into each directory c names and
// checks with containerd's host resolution that each file sends pulls to
// the mirror first. A file cacheyd did not write is never touched: it is
// reported as Refused and the error wraps ErrForeign, after the other
// directories are written.
func Configure(ctx context.Context, c Config) ([]File, error) {
	mirror, err := mirrorURL(c.Mirror)
	if err != nil {
		return nil, err
	}
	targets, err := c.dirs()
	if err != nil {
		return nil, err
	}
	root := c.certsDir()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("certs dir: %w", err)
	}
	var files []File
	var errs []error
	for _, t := range targets {
		f, err := configureOne(root, t, mirror, c.NoFallback)
		files = append(files, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := verify(ctx, root, c.Version, t, mirror); err != nil {
			errs = append(errs, err)
		}
	}
	return files, errors.Join(errs...)
}

// configureOne writes t's file unless someone else's is there.
func configureOne(root string, t target, mirror string, noFallback bool) (File, error) {
	dir := filepath.Join(root, t.dir)
	path := filepath.Join(dir, FileName)
	f := File{Path: path}
	old, err := os.ReadFile(path)
	switch {
	case err == nil && !isOurs(old):
		f.Action = Refused
		f.Detail = fmt.Sprintf("not written by cacheyd: point its first [host] at %s by hand, or move it away and run cacheyd node again", mirror)
		return f, fmt.Errorf("%s: %w", path, ErrForeign)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return f, fmt.Errorf("read %s: %w", path, err)
	}
	made := false
	if err == nil {
		made = madeDir(old) // a rewrite keeps what the first write knew
	} else if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return f, fmt.Errorf("mkdir %s: %w", dir, err)
		}
		made = true
	}
	content := render(mirror, t.registry, noFallback, made)
	if bytes.Equal(old, content) {
		f.Action = Unchanged
		return f, nil
	}
	if err := writeAtomic(path, content, old != nil); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Someone wrote the file since it was read: theirs now.
			f.Action = Refused
			f.Detail = "a hosts.toml appeared while cacheyd was writing: run cacheyd node again"
			return f, fmt.Errorf("%s: %w", path, ErrForeign)
		}
		return f, err
	}
	f.Action = Written
	return f, nil
}

// writeAtomic puts content at path so that containerd, reading the file on
// each pull, sees the old file or the new one, never a part: a temporary
// file in the same directory, synced, then renamed over ours (replace) or
// hard-linked to a name that must not exist yet (not replace: a file that
// appeared meanwhile is someone else's and is left alone), then the
// directory synced so the name survives a crash.
func writeAtomic(path string, content []byte, replace bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".hosts.toml.cacheyd-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a rename, removes nothing
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// verify resolves a registry through what was written, with containerd's
// own code, and checks that the mirror comes first, is used for pulls, and
// is sent ?ns= (so cacheyd knows which registry was meant).
func verify(ctx context.Context, root string, v Version, t target, mirror string) error {
	registry := t.registry
	if registry == "" {
		registry = probeRegistry // any registry without a directory of its own
	}
	hosts, err := Resolve(ctx, root, v, registry)
	if err != nil {
		return err
	}
	want := mirror + "/v2"
	if len(hosts) == 0 || hosts[0].URL != want || !hosts[0].Pull || !hosts[0].NS {
		return fmt.Errorf("%s: containerd would pull %s from %v, not first from %s with ns", filepath.Join(root, t.dir, FileName), registry, hosts, want)
	}
	return nil
}
