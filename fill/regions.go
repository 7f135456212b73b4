package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
)

// regions fetches one fill's object in regions, each its own ranged
// request; the flight says which bytes each request claims (see the
// package doc).
type regions struct {
	f       *flight.Flight
	p       Pending
	src     Source
	req     oci.Request // the fill's request: a GET of the whole object
	size    int64
	chunk   int64
	rescued func()                  // told of each rescue; may be nil
	cancel  context.CancelCauseFunc // ends every request of the fill

	// mu guards noRange, owner and streams. It is held around the
	// flight's claims that depend on noRange, so that no claim is made
	// once the origin is known to ignore ranges; the flight's own lock is
	// taken inside it, never the other way round.
	mu      sync.Mutex
	noRange bool // the origin answered a range whole
	// owner is the stream that carries on to the end once noRange: one
	// only, since two would each leave the other's claim unwritten.
	owner   int
	streams int // streams started, to name them
}

// run fetches what first does not cover, with up to parallel requests at
// once, first's stream among them, and up to rescuers more for stranded
// readers (rescue); it waits for all of them. hinted says the first
// request asked for a window: a whole answer then means the origin ignores
// ranges.
func (r *regions) run(ctx context.Context, first *oci.Response, parallel, rescuers int, hinted bool) error {
	ctx, r.cancel = context.WithCancelCause(ctx)
	defer r.cancel(nil)
	var wg, rescues sync.WaitGroup
	// The first failure is the fill's: it ends every other request, and
	// the context keeps it as the cause.
	fail := func(err error) {
		if err != nil {
			r.cancel(err)
		}
	}
	toEnd := first.End <= 0 || first.End >= r.size
	s := flight.Span{Start: first.Offset, End: min(r.size, first.End)}
	if first.End <= 0 {
		s.End = r.size
	}
	if first.Offset == 0 && toEnd {
		s.End = min(r.size, r.chunk) // claimed a chunk at a time: see extend
	}
	r.mu.Lock()
	r.noRange = hinted && first.Offset == 0 && toEnd
	r.f.Claim(s) // the first claim: nothing is written or claimed yet
	r.mu.Unlock()
	// Each stops when no region is left or the fill's context ends.
	wg.Go(func() {
		err := r.stream(first.Body, first.Offset, s, toEnd)
		if err == nil {
			err = r.worker(ctx)
		}
		fail(err)
	})
	for range parallel - 1 {
		wg.Go(func() { fail(r.worker(ctx)) })
	}
	stop := make(chan struct{})
	if rescuers > 0 {
		// Stops when stop closes or the fill's context ends; what it
		// started, rescues waits for.
		rescues.Go(func() { r.rescue(ctx, stop, rescuers, fail, &rescues) })
	}
	wg.Wait()
	close(stop)
	rescues.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if reach, _, _ := r.f.Written(0, r.size); reach != r.size {
		return Fault(fmt.Errorf("fill ended with bytes [%d, %d) of %d written", 0, reach, r.size))
	}
	return nil
}

// worker fetches regions until none is left.
func (r *regions) worker(ctx context.Context) error {
	for {
		s, ok := r.next()
		if !ok {
			return nil
		}
		if err := r.fetch(ctx, s); err != nil {
			return err
		}
	}
}

// rescue serves readers stranded where no request is heading: a lazy
// pull's table of contents or file window, asked for while every regular
// request is busy with regions of its own, would otherwise wait for one of
// them to finish a chunk. Each time a reader strands (Flight.Stranded) it
// claims that reader's region and fetches it at once, with up to limit
// requests in flight beyond the regular ones; each byte still has one
// request. It returns when stop closes or ctx ends; the fetches it started
// are in wg.
func (r *regions) rescue(ctx context.Context, stop <-chan struct{}, limit int, fail func(error), wg *sync.WaitGroup) {
	slots := make(chan struct{}, limit)
	for {
		// Armed before the scan, so that a reader stranding during it (or
		// before this started) is not missed.
		stranded := r.f.Stranded()
		for {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
			s, ok := r.nextStranded()
			if !ok {
				<-slots
				break
			}
			if r.rescued != nil {
				r.rescued()
			}
			// Ends with its region, or when the fill fails.
			wg.Go(func() {
				defer func() { <-slots }()
				fail(r.fetch(ctx, s))
			})
		}
		select {
		case <-stranded:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// fetch gets claim s with a ranged request and writes it.
func (r *regions) fetch(ctx context.Context, s flight.Span) error {
	req := r.req
	req.Offset, req.Length = s.Start, s.Len()
	resp, err := r.src.Fetch(ctx, &req)
	if err != nil {
		r.f.Unclaim(s)
		return err
	}
	ignored := resp.Offset != s.Start || (resp.End > 0 && resp.End != s.End)
	if ignored {
		// Range ignored: this answer is the whole object. It still gives
		// this claim's bytes; no more claims are made, and one stream
		// carries on to the end.
		r.mu.Lock()
		r.noRange = true
		r.mu.Unlock()
	}
	return r.stream(resp.Body, resp.Offset, s, ignored)
}

// stream writes the bytes of claim s from body, which holds the object
// from byte at on (to its end when toEnd), into the flight, skipping what
// is written or claimed by others; a stream that runs to the end extends
// its claim as extend allows. It closes body and gives the claim back.
func (r *regions) stream(body io.ReadCloser, at int64, s flight.Span, toEnd bool) error {
	defer body.Close()
	defer func() { r.f.Unclaim(s) }()
	r.mu.Lock()
	r.streams++
	id := r.streams
	r.mu.Unlock()
	if at < s.Start {
		if _, err := io.CopyN(io.Discard, body, s.Start-at); err != nil {
			return Fault(fmt.Errorf("read upstream: skipping to %d: %w", s.Start, err))
		}
	}
	buf := make([]byte, min(int64(Buffer), max(s.Len(), 1)))
	pos := s.Start
	for {
		if pos >= s.End {
			if !toEnd || !r.extend(&s, id) {
				return nil
			}
			if s.Start > pos { // others have the bytes between
				if _, err := io.CopyN(io.Discard, body, s.Start-pos); err != nil {
					return Fault(fmt.Errorf("read upstream: skipping to %d: %w", s.Start, err))
				}
				pos = s.Start
			}
		}
		if cap(buf) < Buffer && s.End-pos > int64(len(buf)) {
			buf = make([]byte, Buffer) // the claim grew
		}
		m, err := io.ReadFull(body, buf[:min(int64(len(buf)), s.End-pos)])
		if m > 0 {
			if werr := r.write(buf[:m], pos, s); werr != nil {
				return werr
			}
			pos += int64(m)
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			if pos < s.End {
				return Fault(fmt.Errorf("read upstream: body ended at %d, before %d: %w", pos, s.End, io.ErrUnexpectedEOF))
			}
		case err != nil:
			return Fault(fmt.Errorf("read upstream after %d bytes: %w", pos, err))
		}
	}
}

// write writes p at off into the flight, leaving out what is written
// already (an origin that ignored a range sends it again) and what another
// request has claimed (it writes that itself); own is the writer's claim.
func (r *regions) write(p []byte, off int64, own flight.Span) error {
	end := off + int64(len(p))
	for off < end {
		w := r.f.Writable(own, off, end)
		if w.Start >= end {
			return nil
		}
		if err := r.p.Claim(w.Len()); err != nil {
			return err
		}
		if _, err := r.f.WriteAt(p[w.Start-off:w.End-off], w.Start); err != nil {
			return r.p.Failed(fmt.Errorf("write pending file: %w", err))
		}
		p, off = p[w.End-off:], w.End
	}
	return nil
}

// next claims the next region to fetch, or reports false when every byte
// is written or claimed, or the origin ignores ranges.
func (r *regions) next() (flight.Span, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.noRange {
		return flight.Span{}, false
	}
	return r.f.ClaimNext(r.chunk)
}

// nextStranded claims the region at a stranded reader's next byte, or
// reports false.
func (r *regions) nextStranded() (flight.Span, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.noRange {
		return flight.Span{}, false
	}
	return r.f.ClaimStranded(r.chunk)
}

// extend grows the claim of stream id, whose body runs to the end of the
// object, past its end: by a chunk while the bytes after are neither
// written nor claimed; or, once the origin is known to ignore ranges and
// this stream is the one that carries on, to the next bytes nobody has,
// wherever they start (the stream then skips to them). It reports false
// when the stream should stop.
func (r *regions) extend(s *flight.Span, id int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		g  flight.Span
		ok bool
	)
	if r.noRange {
		if r.owner != 0 && r.owner != id {
			return false
		}
		if g, ok = r.f.Skip(*s); ok {
			r.owner = id
		}
	} else {
		g, ok = r.f.Extend(*s, r.chunk)
	}
	if ok {
		*s = g
	}
	return ok
}
