package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cacheyd/cacheyd/tier"
)

// errPrivate refuses an upload whose content has a private source by the
// time it is read.
var errPrivate = errors.New("the content has a private source")

// work runs the uploads queued, one at a time, until Close.
func (s *Store) work() {
	defer s.workers.Done()
	for {
		select {
		case <-s.stopCtx.Done():
			return
		case e := <-s.queue:
			if s.stopCtx.Err() != nil {
				// Closed meanwhile: select chose the queue at random.
				s.end()
				s.drop()
				return
			}
			s.upload(e)
			s.end()
		}
	}
}

// upload uploads e and counts how it ended.
func (s *Store) upload(e tier.Entry) {
	result, err := s.put(e)
	switch result {
	case UploadStored:
		s.hold(e.Digest)
		s.stored.Add(1)
		s.cfg.Metrics.S3.WrittenBytes.Add(float64(e.Size))
	case UploadPresent:
		s.hold(e.Digest)
		s.present.Add(1)
	default:
		s.failed.Add(1)
		s.failure(err)
		s.cfg.Logger.Warn("s3 upload failed", "digest", e.Digest.Short(), "size", e.Size, "err", err)
	}
	s.cfg.Metrics.S3.Uploads.WithLabelValues(result).Inc()
	if s.cfg.Uploaded != nil {
		s.cfg.Uploaded(e, result)
	}
}

// put uploads e unless the bucket holds it: a HEAD first (an object of
// e's size is present), then a conditional create, which a store that
// got the object meanwhile refuses (412, or 409 while another upload of it
// runs): present too. A refuted object, or one of another size, is
// overwritten.
func (s *Store) put(e tier.Entry) (string, error) {
	ctx, key := s.abortCtx, s.key(e.Digest)
	overwrite := s.isRefuted(e.Digest)
	if !overwrite {
		head, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, errTimeout)
		start := time.Now()
		info, err := s.client.StatObject(head, s.cfg.Bucket, key, minio.StatObjectOptions{})
		s.cfg.Metrics.S3.RequestDuration.WithLabelValues("head").Observe(time.Since(start).Seconds())
		cancel()
		switch {
		case err == nil && info.Size == e.Size:
			return UploadPresent, nil
		case err == nil:
			overwrite = true // not the object: a wrong one, to be replaced
		case !isAbsent(err):
			return UploadFailed, fmt.Errorf("s3: head %s: %w", e.Digest.Short(), err)
		}
	}
	rc, held, err := s.cfg.Read(e.Digest)
	if err != nil {
		return UploadFailed, fmt.Errorf("s3: upload %s: %w", e.Digest.Short(), err)
	}
	defer rc.Close()
	if held.Marked() {
		return UploadFailed, fmt.Errorf("s3: upload %s: %w", e.Digest.Short(), errPrivate)
	}
	mediaType := e.MediaType
	if mediaType == "" {
		mediaType = held.MediaType
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: uint64(s.cfg.PartSize)}
	if mediaType != "" {
		opts.ContentType = mediaType
		opts.UserMetadata = map[string]string{metaMediaType: mediaType}
	}
	if !overwrite {
		opts.SetMatchETagExcept("*") // If-None-Match: *, a create only
	}
	start := time.Now()
	_, err = s.client.PutObject(ctx, s.cfg.Bucket, key, rc, e.Size, opts)
	s.cfg.Metrics.S3.RequestDuration.WithLabelValues("put").Observe(time.Since(start).Seconds())
	if err != nil {
		if st := statusOf(err); !overwrite && (st == http.StatusPreconditionFailed || st == http.StatusConflict) {
			return UploadPresent, nil
		}
		return UploadFailed, fmt.Errorf("s3: upload %s: %w", e.Digest.Short(), err)
	}
	if overwrite {
		s.overwritten(e.Digest)
	}
	return UploadStored, nil
}
