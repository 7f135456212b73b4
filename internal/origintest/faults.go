package origintest

import (
	"context"
	"net/http"

	"github.com/cacheyd/cacheyd/oci"
)

// Fail answers err to every request, of every method (Only narrows it, as
// Only(http.MethodHead).Times(2) for the next two HEADs). The request is
// still passed on and its answer dropped (its body closed): the origin
// beneath counts it, as a registry sees a request it then fails.
func Fail(next Fetcher, err error) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		drop(next.Fetch(ctx, req))
		return nil, err
	})
}

// Private demands auth as the Authorization of every request and refuses
// any other with a 401 UNAUTHORIZED, a Bearer challenge and no body. A
// refused request is still passed on and its answer dropped, as Fail's.
func Private(next Fetcher, auth string) *Fault {
	return PrivateWith(next, auth, &oci.Error{Status: http.StatusUnauthorized, Code: oci.CodeUnauthorized, Message: "auth",
		Challenge: `Bearer realm="http://localhost:1/token"`})
}

// PrivateWith is Private refusing with refusal: a registry's own challenge
// and error body, say.
func PrivateWith(next Fetcher, auth string, refusal *oci.Error) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		resp, err := next.Fetch(ctx, req)
		if req.Authorization == auth {
			return resp, err
		}
		drop(resp, err)
		return nil, refusal
	})
}

// drop closes the body of an answer nobody takes.
func drop(resp *oci.Response, err error) {
	if err == nil && resp.Body != nil {
		resp.Body.Close()
	}
}

// UnknownSize answers every request with Size and End -1, as a registry
// that sends no Content-Length (a chunked body). Faults that find their
// place in a body by its size (Gate, Corrupt) go beneath it.
func UnknownSize(next Fetcher) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		resp, err := next.Fetch(ctx, req)
		if err == nil {
			resp.Size, resp.End = -1, -1
		}
		return resp, err
	})
}

// NoDigest answers every request without a digest, as a registry that
// sends no Docker-Content-Digest.
func NoDigest(next Fetcher) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		resp, err := next.Fetch(ctx, req)
		if err == nil {
			resp.Digest = ""
		}
		return resp, err
	})
}

// IgnoreRange answers every GET with the whole object, as a server that
// does not do ranges: the request is passed on without its window. A
// Record above it keeps the windows asked for.
func IgnoreRange(next Fetcher) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		whole := *req
		whole.Offset, whole.Length, whole.Suffix = 0, 0, 0
		return next.Fetch(ctx, &whole)
	}, http.MethodGet)
}

// Corrupt flips the middle byte of every GET body: the length and headers
// stay right, the content (and so its digest) is wrong. A body of unknown
// size has its first byte flipped.
func Corrupt(next Fetcher) *Fault {
	return newFault(next, func(ctx context.Context, req *oci.Request, next Fetcher) (*oci.Response, error) {
		resp, err := next.Fetch(ctx, req)
		if err != nil || resp.Body == nil {
			return resp, err
		}
		at := int64(0)
		if n := windowOf(resp); n > 0 {
			at = n / 2
		}
		resp.Body = &flipped{ReadCloser: resp.Body, at: at}
		return resp, nil
	}, http.MethodGet)
}

// windowOf is the length of resp's body as announced, or -1 when unknown.
func windowOf(resp *oci.Response) int64 {
	end := resp.End
	if end == 0 {
		end = resp.Size // not said: to the end
	}
	if end < 0 {
		return -1
	}
	return end - resp.Offset
}
