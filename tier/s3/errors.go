package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier"
)

// errTimeout is why a request was ended: its answer's headers, or the next
// bytes of its body, took longer than Timeout.
var errTimeout = errors.New("no answer within the timeout")

// Kinds of read errors, as the read errors metric names them.
const (
	kindTimeout     = "timeout"
	kindDenied      = "denied"
	kindUnreachable = "unreachable"
	kindOther       = "other"
)

// statusOf is the HTTP status of the store's error answer, or 0.
func statusOf(err error) int {
	var e minio.ErrorResponse
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// isAbsent reports whether err says the object is not in the bucket.
func isAbsent(err error) bool {
	var e minio.ErrorResponse
	return errors.As(err, &e) && (e.StatusCode == http.StatusNotFound || e.Code == minio.NoSuchKey)
}

// kindOf sorts a failure of the store for the read errors metric.
func kindOf(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(context.Cause(ctx), errTimeout) || errors.Is(err, errTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()):
		return kindTimeout
	case statusOf(err) == http.StatusForbidden || statusOf(err) == http.StatusUnauthorized:
		return kindDenied
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || isDNS(err):
		return kindUnreachable
	}
	return kindOther
}

func isDNS(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// failed wraps a failure of the store for dg: tier.ErrFailed with its cause.
func failed(op string, dg oci.Digest, kind string, err error) error {
	return fmt.Errorf("s3: %s %s: %w (%s): %w", op, dg.Short(), tier.ErrFailed, kind, err)
}

// notFound is the answer for an object the bucket does not hold: a 404 as a
// registry gives it, wrapping tier.ErrNotFound.
func notFound(req *oci.Request, why string) error {
	e := oci.ErrBlobUnknown(req.Reference.Digest)
	if req.Kind == oci.KindManifest {
		e = oci.ErrManifestUnknown(req.Reference.String())
	}
	e.Message += " (" + why + ")"
	e.Err = tier.ErrNotFound
	return e
}

// notHeld refuses what the tier never holds (tags, listings): a 404 as for
// an absent object, so that the next source is asked.
func notHeld(req *oci.Request) error {
	return &oci.Error{Status: http.StatusNotFound, Code: oci.CodeNameUnknown,
		Message: "s3: the object store holds content by digest only, not " + req.Kind.String() + " " + req.Reference.String(),
		Err:     tier.ErrNotFound}
}
