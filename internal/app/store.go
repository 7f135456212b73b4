package app

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
	"github.com/cacheyd/cacheyd/tier/disk"
	"github.com/cacheyd/cacheyd/tier/s3"
)

// openStore opens the object store sc names behind the disk tier d: a
// keeper of what d commits, whose uploads read d's committed files, and a
// source of content by digest. It returns nil when sc names no bucket.
func openStore(sc s3.Config, d *disk.Disk) (*s3.Store, error) {
	if sc.Bucket == "" {
		return nil, nil
	}
	sc.Read = func(dg oci.Digest) (io.ReadCloser, tier.Entry, error) {
		c, e, err := d.Open(context.Background(), dg)
		if err != nil {
			return nil, e, err
		}
		return committed{io.NewSectionReader(c, 0, c.Size()), c}, e, nil
	}
	return s3.Open(sc)
}

// committed is a committed file of the disk tier, read from its start.
type committed struct {
	io.Reader
	io.Closer
}

// flushStore gives the uploads the store has queued up to limit to finish
// at a graceful stop, so that what the last fills brought outlives the
// pod, and logs what was left.
func flushStore(st *s3.Store, limit time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := st.Flush(ctx); err != nil {
		log.Warn("uploads to the object store left at stop", "err", err)
	}
}

// bucketName is how the status page names the bucket sc describes.
func bucketName(sc s3.Config) string {
	if sc.Bucket == "" {
		return ""
	}
	name := "s3://" + sc.Bucket + "/" + strings.TrimPrefix(sc.Prefix, "/")
	if sc.Endpoint != "" {
		name += " at " + sc.Endpoint
	}
	return name
}
