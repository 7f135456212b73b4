package sources

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

// answer is a fetcher that answers every request the same way, counting
// them.
type answer struct {
	resp  func() *oci.Response
	err   error
	asked int
}

func (a *answer) Fetch(context.Context, *oci.Request) (*oci.Response, error) {
	a.asked++
	if a.err != nil {
		return nil, a.err
	}
	return a.resp(), nil
}

// TestAnAlternatesOwnFailures: what an alternate's answer becomes, and
// when it is asked at all: its failures are its own (the next source is
// asked), the caller's own end is not, and a digest it sent wrong bytes
// for is passed on without asking it again.
func TestAnAlternatesOwnFailures(t *testing.T) {
	data := []byte("the object an alternate holds")
	dg := oci.FromBytes(data)
	whole := func(b []byte, d oci.Digest) func() *oci.Response {
		return func() *oci.Response {
			return &oci.Response{Digest: d, Size: int64(len(b)), End: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b))}
		}
	}
	wrong := append([]byte(nil), data...)
	wrong[3] ^= 0xff
	for _, tt := range []struct {
		name      string
		f         *answer
		auth      string
		cancelled bool
		// reason of the Fetch's or the body's failure ("" none); again:
		// the next Fetch of the digest is passed on unasked.
		reason Reason
		again  bool
	}{
		{"content", &answer{resp: whole(data, dg)}, "", false, "", false},
		{"404", &answer{err: &oci.Error{Status: http.StatusNotFound, Upstream: true}}, "", false, Missing, false},
		{"401", &answer{err: &oci.Error{Status: http.StatusUnauthorized, Upstream: true}}, "", false, Unreachable, false},
		{"503", &answer{err: &oci.Error{Status: http.StatusServiceUnavailable, Upstream: true}}, "", false, Failing, false},
		{"unreachable", &answer{err: oci.ErrUpstreamUnavailable}, "", false, Unreachable, false},
		{"another digest", &answer{resp: whole(data, oci.FromBytes([]byte("other")))}, "", false, Wrong, true},
		{"wrong bytes", &answer{resp: whole(wrong, dg)}, "", false, Wrong, true},
		{"the caller's own end", &answer{err: context.Canceled}, "", true, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := &alternate{f: tt.f}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			req := &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app", Reference: oci.Reference{Digest: dg}}
			resp, err := a.Fetch(ctx, req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			var f *Failure
			switch {
			case tt.reason == "" && errors.As(err, &f):
				t.Errorf("Fetch: %v, a failure of the alternate; want none", err)
			case tt.reason != "" && (!errors.As(err, &f) || f.Reason != tt.reason):
				t.Errorf("Fetch: %v, want a failure for %s", err, tt.reason)
			case tt.cancelled && !errors.Is(err, context.Canceled):
				t.Errorf("Fetch: %v, want the caller's own end", err)
			}
			_, err = a.Fetch(t.Context(), req)
			if passed := errors.Is(err, ErrNotAsked); passed != tt.again {
				t.Errorf("next Fetch: %v; passed on: %v, want %v", err, passed, tt.again)
			}
			if want := map[bool]int{false: 2, true: 1}[tt.again]; tt.f.asked != want {
				t.Errorf("asked %d times, want %d", tt.f.asked, want)
			}
		})
	}
	// A client's credentials never reach an alternate.
	f := &answer{resp: whole(data, dg)}
	req := &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "team/secret", Reference: oci.Reference{Digest: dg}, Authorization: "Bearer client"}
	if _, err := (&alternate{f: f}).Fetch(t.Context(), req); !errors.Is(err, ErrNotAsked) || f.asked != 0 {
		t.Errorf("with a client's credentials: %v, asked %d times; want passed on, never asked", err, f.asked)
	}
	if _, ask := (alternates{"docker.io": {&alternate{f: f}}}).Plan(req, false); len(ask) != 0 {
		t.Errorf("with a client's credentials, planned %d alternates", len(ask))
	}
}
