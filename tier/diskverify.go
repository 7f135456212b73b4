package tier

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// After an unclean stop (kill -9, a crash, a power loss) the disk is not
// trusted blindly: an object is indexed only if its size matches its record,
// and before it is first served its digest is checked again. A whole read
// of a large object is hashed while it streams, and its last byte is held
// until the digest matched (like a fill); a range, and any small object,
// waits for a check of the whole file first. An object that fails is
// removed and fetched again; it is never served as whole.

// verifications lets concurrent first requests for an unverified object
// share one check.
type verifications struct {
	mu      sync.Mutex // guards running
	running map[oci.Digest]*verification
}

type verification struct {
	done chan struct{} // closed when err is set
	err  error
}

// verify checks dg's file against its digest, once, and marks it verified,
// or removes it and returns why. Concurrent callers share the check; ctx
// ends only the caller's own wait.
func (d *disk) verify(ctx context.Context, dg oci.Digest) error {
	d.verifying.mu.Lock()
	if d.verifying.running == nil {
		d.verifying.running = map[oci.Digest]*verification{}
	}
	v, running := d.verifying.running[dg]
	if !running {
		v = &verification{done: make(chan struct{})}
		d.verifying.running[dg] = v
	}
	d.verifying.mu.Unlock()
	if !running {
		// The first caller checks on its own goroutine: the work is bounded
		// by the file's size, and every other caller waits for it.
		v.err = d.check(dg)
		d.verifying.mu.Lock()
		delete(d.verifying.running, dg)
		d.verifying.mu.Unlock()
		close(v.done)
		return v.err
	}
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check hashes dg's committed file and records the outcome.
func (d *disk) check(dg oci.Digest) error {
	e, ok := d.lookup(dg)
	if !ok {
		return fmt.Errorf("disk: %s is gone", dg.Short())
	}
	if e.verified {
		return nil
	}
	f, err := os.Open(d.path(dg))
	if err != nil {
		d.forget(dg)
		return fmt.Errorf("disk: verify %s: %w", dg.Short(), err)
	}
	defer f.Close()
	h := dg.NewHash()
	n, err := io.Copy(h, f)
	switch {
	case err != nil:
		return fmt.Errorf("disk: verify %s: %w", dg.Short(), err)
	case n != e.size || !dg.Matches(h):
		d.corrupt(dg, n, e.size)
		return fmt.Errorf("disk: %s does not match its digest after an unclean stop", dg.Short())
	}
	d.markVerified(dg)
	return nil
}

// verified records the outcome of a whole read that hashed dg's file: nil
// marks it verified, anything else removes it.
func (d *disk) verified(dg oci.Digest, size int64) func(error) {
	return func(err error) {
		if err == nil {
			d.markVerified(dg)
			return
		}
		d.corrupt(dg, -1, size)
	}
}

func (d *disk) markVerified(dg oci.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.index[dg]; ok {
		el.Value.(*diskEntry).verified = true
	}
}

// corrupt removes an object that failed its check.
func (d *disk) corrupt(dg oci.Digest, got, want int64) {
	d.log.Warn("disk: removed an object that does not match its digest", "digest", dg.Short(), "bytes", got, "recorded", want)
	d.discard(dg)
}
