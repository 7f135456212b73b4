package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheyd/cacheyd/oci"
)

// metaMediaType is the object metadata (x-amz-meta-media-type) that holds a
// manifest's media type; the object's Content-Type says the same for tools
// that look at the bucket.
const metaMediaType = "Media-Type"

// Fetch answers a GET or HEAD of a blob, or of a manifest by digest, from
// the bucket, as a registry answers it: the window asked for (a ranged GET;
// 416 past the end), the object's size, digest and, for a manifest, its
// media type. What the bucket does not hold, or holds refuted, is an error
// wrapping tier.ErrNotFound; tags and listings are never held. A store that
// fails, refuses or does not answer within Timeout is an error wrapping
// tier.ErrFailed; so is a body that sends nothing for Timeout.
func (s *Store) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if (req.Kind != oci.KindBlob && req.Kind != oci.KindManifest) || !req.Reference.IsDigest() {
		return nil, notHeld(req)
	}
	dg := req.Reference.Digest
	if s.isRefuted(dg) {
		s.cfg.Metrics.S3.Reads.WithLabelValues("miss").Inc()
		return nil, notFound(req, "its object in the bucket failed verification")
	}
	// One timer bounds the wait for the answer's headers, then each wait
	// of the body for its next bytes.
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(s.cfg.Timeout, func() { cancel(errTimeout) })
	end := func() {
		timer.Stop()
		cancel(nil)
	}
	if req.Method == http.MethodHead {
		defer end()
		start := time.Now()
		info, err := s.client.StatObject(ctx, s.cfg.Bucket, s.key(dg), minio.StatObjectOptions{})
		s.cfg.Metrics.S3.RequestDuration.WithLabelValues("head").Observe(time.Since(start).Seconds())
		if err != nil {
			return nil, s.readFailed(ctx, req, "head", err)
		}
		s.cfg.Metrics.S3.Reads.WithLabelValues("hit").Inc()
		s.hold(dg)
		return answer(req, info), nil
	}
	var opts minio.GetObjectOptions
	if r := req.RangeHeader(); r != "" {
		opts.Set("Range", r)
	}
	start := time.Now()
	body, info, header, err := s.core.GetObject(ctx, s.cfg.Bucket, s.key(dg), opts)
	s.cfg.Metrics.S3.RequestDuration.WithLabelValues("get").Observe(time.Since(start).Seconds())
	if err != nil {
		defer end()
		return nil, s.readFailed(ctx, req, "get", err)
	}
	resp := answer(req, info)
	if cr := header.Get("Content-Range"); cr != "" {
		r, err := oci.ParseContentRange(cr)
		if err == nil {
			err = r.Answers(req)
		}
		if err != nil {
			body.Close()
			end()
			s.count(ctx, err)
			return nil, failed("get", dg, kindOther, fmt.Errorf("the store's range: %w", err))
		}
		resp.Offset, resp.End, resp.Size = r.Start, r.End+1, r.Size
	}
	s.cfg.Metrics.S3.Reads.WithLabelValues("hit").Inc()
	s.hold(dg) // its bytes are verified by the fill, which refutes them if wrong
	resp.Body = &idleBody{rc: body, s: s, ctx: ctx, dg: dg, timer: timer, end: end, n: s.cfg.Metrics.S3.ReadBytes}
	timer.Reset(s.cfg.Timeout)
	return resp, nil
}

// answer is the Response for info, the object req names, whole.
func answer(req *oci.Request, info minio.ObjectInfo) *oci.Response {
	resp := &oci.Response{Digest: req.Reference.Digest, Size: info.Size, End: info.Size}
	if req.Kind == oci.KindManifest {
		resp.MediaType = info.Metadata.Get("X-Amz-Meta-" + metaMediaType)
	}
	return resp
}

// readFailed turns the store's error for req into Fetch's: absent, a range
// past the end, or a failure of the store (counted by kind).
func (s *Store) readFailed(ctx context.Context, req *oci.Request, op string, err error) error {
	m := s.cfg.Metrics.S3
	switch {
	case isAbsent(err) && context.Cause(ctx) == nil:
		m.Reads.WithLabelValues("miss").Inc()
		return notFound(req, "not in the bucket")
	case statusOf(err) == http.StatusRequestedRangeNotSatisfiable:
		m.Reads.WithLabelValues("hit").Inc()
		return &oci.Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: oci.CodeRangeInvalid,
			Message: "s3: range " + req.RangeHeader() + " of " + req.Reference.Digest.Short(), Err: err}
	}
	m.Reads.WithLabelValues("error").Inc()
	return failed(op, req.Reference.Digest, s.count(ctx, err), err)
}

// count counts a failed read by its kind, notes it for Status, and returns
// the kind.
func (s *Store) count(ctx context.Context, err error) string {
	kind := kindOf(ctx, err)
	if errors.Is(context.Cause(ctx), errTimeout) {
		err = fmt.Errorf("%w: %w", errTimeout, err)
	}
	s.cfg.Metrics.S3.ReadErrors.WithLabelValues(kind).Inc()
	s.failure(err)
	return kind
}

// idleBody is a body from the bucket that fails when it sends nothing for
// Timeout: the timer, reset by every read that brings bytes, cancels its
// request.
type idleBody struct {
	rc    io.ReadCloser
	s     *Store
	ctx   context.Context
	dg    oci.Digest
	timer *time.Timer
	end   func()
	n     prometheus.Counter
	err   error // the failure already counted, given again to every later Read
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.s.cfg.Timeout)
		b.n.Add(float64(n))
	}
	if err != nil && err != io.EOF {
		err = failed("get body of", b.dg, b.s.count(b.ctx, err), err)
		b.err = err
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.end()
	return b.rc.Close()
}
