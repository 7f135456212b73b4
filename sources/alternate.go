package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// AlternateRegistry is a registry that serves another registry's content by
// digest (a public mirror, the operator's own registry): since every byte
// is verified against the digest asked for, content by digest may come
// from anywhere. Its failures, a 404 included, are its own: the next
// alternate is asked, then the registry.
type AlternateRegistry struct {
	// Registry is the canonical name of the registry it stands in for
	// (as oci.NormalizeRegistry returns it).
	Registry string
	// Fetcher fetches a request of Registry from the alternate (the
	// upstream client's upstream.Alternate): it rewrites the request to
	// the alternate's address and path itself.
	Fetcher Fetcher
	// Name names the alternate in logs (its URL); empty names it by its
	// place among the alternates.
	Name string
}

// AlternateMode says where the alternates stand beside the registry.
type AlternateMode string

const (
	// Prefer asks the alternates first, the registry only when none has
	// the content: the registry sees no pull an alternate could serve.
	Prefer AlternateMode = "prefer"
	// Fallback asks the registry first and the alternates only once it
	// answers 429, fails or is unreachable, or, for a manifest GET, once
	// its remaining pull budget is below Set.Reserve (fallback.go).
	Fallback AlternateMode = "fallback"
)

// alternates plans the alternates of a request's registry, in the
// operator's order: only for content by digest fetched as cacheyd, never
// for a tag, a listing or a request carrying a client's credentials,
// whatever list it is in.
type alternates map[string][]Fetcher

func newAlternates(as []AlternateRegistry) alternates {
	if len(as) == 0 {
		return nil
	}
	out := make(alternates)
	for _, a := range as {
		out[a.Registry] = append(out[a.Registry], &alternate{f: a.Fetcher})
	}
	return out
}

// Plan returns the alternates of req's registry, if req may go to one.
func (as alternates) Plan(req *oci.Request, _ bool) (string, []Fetcher) {
	if req.Authorization != "" || req.Kind.IsListing() || !req.Reference.IsDigest() {
		return "", nil
	}
	return "", as[req.Registry]
}

// wrongFor is how long an alternate that sent the wrong bytes for a
// digest is passed over for it, and wrongMax how many such digests one
// alternate remembers (the oldest memory is dropped whole beyond it).
const (
	wrongFor = time.Hour
	wrongMax = 1024
)

// alternate is one alternate as a source: every failure of its own is a
// *Failure, and a whole body is verified as it is read. Bytes found wrong
// fail the fill that read them (a cache never completes wrong bytes, and
// the bytes before the verdict are in its file already); the alternate is
// then passed over for that digest, so that the client's next attempt
// fetches it from the next source.
type alternate struct {
	f Fetcher
	// label names the source in its errors ("alternate" when empty).
	label string
	// told, when set, is told of each digest the source sent wrong bytes
	// for (an object store overwrites them with the good copy).
	told func(oci.Digest)

	mu    sync.Mutex // guards wrong
	wrong map[oci.Digest]time.Time
}

// passed reports whether the alternate sent wrong bytes for dg lately.
func (a *alternate) passed(dg oci.Digest) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.wrong[dg]
	if ok && time.Since(at) > wrongFor {
		delete(a.wrong, dg)
		return false
	}
	return ok
}

// sentWrong remembers that the alternate sent wrong bytes for dg.
func (a *alternate) sentWrong(dg oci.Digest) {
	a.mu.Lock()
	if a.wrong == nil || len(a.wrong) >= wrongMax {
		a.wrong = make(map[oci.Digest]time.Time)
	}
	a.wrong[dg] = time.Now()
	a.mu.Unlock()
	if a.told != nil {
		a.told(dg)
	}
}

// name is the source's name in its errors.
func (a *alternate) name() string {
	if a.label == "" {
		return "alternate"
	}
	return a.label
}

// refute remembers that the alternate sent wrong bytes for req's digest,
// found when the whole object was verified.
func (a *alternate) refute(req *oci.Request) { a.sentWrong(req.Reference.Digest) }

func (a *alternate) Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if req.Authorization != "" || a.passed(req.Reference.Digest) {
		// Never private content, which goes to its registry only; nor a
		// digest this alternate sent wrong bytes for.
		return nil, ErrNotAsked
	}
	resp, err := a.f.Fetch(ctx, req)
	if err != nil {
		return nil, alternateFailed(ctx, err)
	}
	if resp.Digest != "" && resp.Digest != req.Reference.Digest {
		if resp.Body != nil {
			resp.Body.Close()
		}
		a.sentWrong(req.Reference.Digest)
		return nil, Fail(Wrong, fmt.Errorf("%s: answered with digest %s for %s", a.name(), resp.Digest.Short(), req.Reference.Digest.Short()))
	}
	if resp.Body == nil {
		return resp, nil
	}
	body := resp.Body
	if resp.Offset == 0 && (resp.End <= 0 || resp.End == resp.Size) {
		// The whole object: it cannot complete wrong here, and a mismatch
		// is the alternate's failure, so the route asks the next.
		body = oci.NewVerifyingReader(body, req.Reference.Digest, resp.Size, nil)
	}
	resp.Body = &alternateBody{ReadCloser: body, ctx: ctx, a: a, dg: req.Reference.Digest}
	return resp, nil
}

// alternateFailed is an alternate's err as the route takes it: its own
// failure, unless the caller's ctx ended it or it is one already.
func alternateFailed(ctx context.Context, err error) error {
	var f *Failure
	switch {
	case ctx.Err() != nil:
		return err // the caller's own end
	case errors.As(err, &f), errors.Is(err, ErrNotAsked):
		return err
	}
	return Fail(reasonOf(err), fmt.Errorf("alternate: %w", err))
}

// reasonOf is why an alternate failed, from its error.
func reasonOf(err error) Reason {
	if e, ok := oci.AsError(err); ok && e.Upstream {
		switch e.Status {
		case http.StatusNotFound:
			return Missing
		case http.StatusUnauthorized, http.StatusForbidden:
			return Unreachable
		}
		return Failing
	}
	if errors.Is(err, oci.ErrUpstreamUnavailable) {
		return Unreachable
	}
	return Failing
}

// alternateBody makes a read that fails in the alternate's own right (a
// cut, a stall, bytes that are not the object) the alternate's failure,
// unless the reader's own context ended it.
type alternateBody struct {
	io.ReadCloser
	ctx context.Context
	a   *alternate
	dg  oci.Digest
}

func (b *alternateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil || err == io.EOF {
		return n, err
	}
	switch {
	case errors.Is(err, oci.ErrDigestMismatch):
		b.a.sentWrong(b.dg)
		return n, Fail(Wrong, fmt.Errorf("%s: %w", b.a.name(), err))
	case errors.Is(context.Cause(b.ctx), oci.ErrStalled):
		return n, Fail(Stalled, fmt.Errorf("%s: %w", b.a.name(), err))
	case b.ctx.Err() != nil:
		return n, err
	}
	return n, Fail(Failing, fmt.Errorf("%s: %w", b.a.name(), err))
}
