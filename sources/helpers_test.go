package sources_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/sources"
)

// fake is a source of the tests: it counts the requests it is asked and
// answers with data, or as its fault says.
type fake struct {
	data []byte

	mu    sync.Mutex // guards fault and asked
	fault string     // "", "unreachable", "wrong bytes", "404", "429", "503", "relayed"
	asked int
}

func (f *fake) set(fault string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

func (f *fake) Fetch(_ context.Context, req *oci.Request) (*oci.Response, error) {
	f.mu.Lock()
	f.asked++
	fault := f.fault
	f.mu.Unlock()
	switch fault {
	case "unreachable":
		return nil, sources.Fail(sources.Unreachable, errors.New("connection refused"))
	case "404":
		return nil, &oci.Error{Status: http.StatusNotFound, Code: oci.CodeBlobUnknown, Message: "unknown", Upstream: true}
	case "429":
		return nil, &oci.Error{Status: http.StatusTooManyRequests, Code: oci.CodeTooManyRequests, Message: "pull limit", Upstream: true}
	case "503":
		return nil, &oci.Error{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE", Message: "down", Upstream: true}
	case "relayed":
		e := &oci.Error{Status: http.StatusBadGateway, Code: "UNAVAILABLE", Message: "upstream failed", Upstream: true, Err: oci.ErrRelayed}
		return nil, fmt.Errorf("relayed %w", e)
	}
	size := int64(len(f.data))
	start, end := req.Offset, size
	if req.Length > 0 {
		end = min(start+req.Length, size)
	}
	var body io.Reader = bytes.NewReader(f.data[start:end])
	if fault == "wrong bytes" {
		// All but the last byte, then the verdict a verifying reader
		// gives bytes that are not the object.
		body = io.MultiReader(bytes.NewReader(f.data[start:end-1]),
			errReader{sources.Fail(sources.Wrong, fmt.Errorf("peer: %w", oci.ErrDigestMismatch))})
	}
	return &oci.Response{Digest: oci.FromBytes(f.data), Size: size, Offset: start, End: end, Body: io.NopCloser(body)}, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// owner is the owner entry of the tests: one member above this replica,
// asked under key "member", or none when this replica owns the key.
type owner struct {
	member *fake
	owns   bool

	mu    sync.Mutex // guards plans
	plans int
}

func (o *owner) Plan(*oci.Request, bool) (string, []sources.Fetcher) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.plans++
	if o.owns {
		return "", nil
	}
	return "member", []sources.Fetcher{o.member}
}

func (o *owner) planned() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.plans
}

// answerOf reads what a route answered: content, which must be want, gives
// 0; a registry's answer gives its status. Anything else fails the test.
func answerOf(t *testing.T, resp *oci.Response, err error, want []byte) int {
	t.Helper()
	if err == nil {
		var got []byte
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && string(got) != string(want) {
			t.Errorf("read %q, want %q", got, want)
		}
	}
	if err == nil {
		return 0
	}
	e, ok := oci.AsError(err)
	if !ok {
		t.Fatalf("Fetch = %v, want content or a registry's answer", err)
	}
	return e.Status
}
