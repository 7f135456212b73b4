package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
	"github.com/cacheyd/cacheyd/tier/disk"
)

// A fill of a large blob is fetched as regions of at most Config.FillChunk
// bytes, with up to Config.FillParallel requests to the origin at once, in
// the order readers need them: the region at each waiting reader's next
// byte first, then the lowest missing one. A reader whose next byte no
// request is heading for (a lazy pull's table of contents, asked for while
// every request is busy with a chunk) does not wait for one to finish: its
// region gets a request of its own at once, up to rescuers of them. The
// first request is the window of the request that started the fill, when
// it asked for one (a lazy pull's footer, say), so that its bytes come in
// one round trip, or the whole object otherwise; the regions fill in what
// it does not cover. Each
// region is its own ranged request, resumed on its own after a cut (package
// retry). An origin that ignores Range is noticed on the first region it
// answers whole: the fill then goes on as one sequential stream. The digest
// is computed over the prefix as it grows (package flight), so the whole
// object is still verified before anyone gets its last byte.

// rescuers is how many requests a fill of parallel regular ones may make
// beyond them for stranded readers (chunker.rescue): half as many again,
// so that a fill holds at most 1.5× --fill-parallel connections and
// buffers; none for a fill that is one stream.
func rescuers(parallel int) int {
	if parallel <= 1 {
		return 0
	}
	return max(1, parallel/2)
}

// chunker fetches one fill's object in regions.
type chunker struct {
	c      *Cache
	f      *fill
	p      *disk.Pending
	req    oci.Request // the fill's request: a GET of the whole object
	size   int64
	chunk  int64
	cancel context.CancelCauseFunc // ends every request of the fill

	mu      sync.Mutex // guards claimed, noRange, owner and streams
	claimed []span     // regions being fetched, sorted
	noRange bool       // the origin answered a range whole
	// owner is the stream that carries on to the end once noRange: one
	// only, since two would each leave the other's claim unwritten.
	owner   int
	streams int // streams started, to name them
}

// span is the bytes [start, end).
type span struct{ start, end int64 }

// run fetches what first does not cover, with up to parallel requests at
// once, first's stream among them, and up to rescuers more for stranded
// readers (rescue); it waits for all of them. hinted says the first
// request asked for a window: a whole answer then means the origin ignores
// ranges.
func (k *chunker) run(ctx context.Context, first *oci.Response, parallel, rescuers int, hinted bool) error {
	ctx, k.cancel = context.WithCancelCause(ctx)
	defer k.cancel(nil)
	var wg, rescues sync.WaitGroup
	// The first failure is the fill's: it ends every other request, and
	// the context keeps it as the cause.
	fail := func(err error) {
		if err != nil {
			k.cancel(err)
		}
	}
	toEnd := first.End <= 0 || first.End >= k.size
	s := span{first.Offset, min(k.size, first.End)}
	if first.End <= 0 {
		s.end = k.size
	}
	if first.Offset == 0 && toEnd {
		s.end = min(k.size, k.chunk) // claimed a chunk at a time: see extend
	}
	k.mu.Lock()
	k.noRange = hinted && first.Offset == 0 && toEnd
	k.claimLocked(s)
	k.mu.Unlock()
	// Each stops when no region is left or the fill's context ends.
	wg.Go(func() {
		err := k.stream(first.Body, first.Offset, s, toEnd)
		if err == nil {
			err = k.worker(ctx)
		}
		fail(err)
	})
	for range parallel - 1 {
		wg.Go(func() { fail(k.worker(ctx)) })
	}
	stop := make(chan struct{})
	if rescuers > 0 {
		// Stops when stop closes or the fill's context ends; what it
		// started, rescues waits for.
		rescues.Go(func() { k.rescue(ctx, stop, rescuers, fail, &rescues) })
	}
	wg.Wait()
	close(stop)
	rescues.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if reach, _, _ := k.f.Written(0, k.size); reach != k.size {
		return upstreamFault(fmt.Errorf("fill ended with bytes [%d, %d) of %d written", 0, reach, k.size))
	}
	return nil
}

// worker fetches regions until none is left.
func (k *chunker) worker(ctx context.Context) error {
	for {
		s, ok := k.next()
		if !ok {
			return nil
		}
		if err := k.fetch(ctx, s); err != nil {
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
func (k *chunker) rescue(ctx context.Context, stop <-chan struct{}, limit int, fail func(error), wg *sync.WaitGroup) {
	slots := make(chan struct{}, limit)
	for {
		// Armed before the scan, so that a reader stranding during it (or
		// before this started) is not missed.
		stranded := k.f.Stranded()
		for {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
			s, ok := k.nextStranded()
			if !ok {
				<-slots
				break
			}
			k.c.m.FillRescues.Inc()
			// Ends with its region, or when the fill fails.
			wg.Go(func() {
				defer func() { <-slots }()
				fail(k.fetch(ctx, s))
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
func (k *chunker) fetch(ctx context.Context, s span) error {
	req := k.req
	req.Offset, req.Length = s.start, s.end-s.start
	resp, err := k.f.via.Fetch(ctx, &req)
	if err != nil {
		k.done(s)
		return err
	}
	ignored := resp.Offset != s.start || (resp.End > 0 && resp.End != s.end)
	if ignored {
		// Range ignored: this answer is the whole object. It still gives
		// this claim's bytes; no more claims are made, and one stream
		// carries on to the end.
		k.mu.Lock()
		k.noRange = true
		k.mu.Unlock()
	}
	return k.stream(resp.Body, resp.Offset, s, ignored)
}

// stream writes the bytes of claim s from body, which holds the object
// from byte at on (to its end when toEnd), into the fill, skipping what is
// written or claimed by others; a stream that runs to the end extends its
// claim as extend allows. It closes body and gives the claim back.
func (k *chunker) stream(body io.ReadCloser, at int64, s span, toEnd bool) error {
	defer body.Close()
	defer func() { k.done(s) }()
	k.mu.Lock()
	k.streams++
	id := k.streams
	k.mu.Unlock()
	if at < s.start {
		if _, err := io.CopyN(io.Discard, body, s.start-at); err != nil {
			return upstreamFault(fmt.Errorf("read upstream: skipping to %d: %w", s.start, err))
		}
	}
	buf := make([]byte, min(int64(copyBuffer), max(s.end-s.start, 1)))
	pos := s.start
	for {
		if pos >= s.end {
			if !toEnd || !k.extend(&s, id) {
				return nil
			}
			if s.start > pos { // others have the bytes between
				if _, err := io.CopyN(io.Discard, body, s.start-pos); err != nil {
					return upstreamFault(fmt.Errorf("read upstream: skipping to %d: %w", s.start, err))
				}
				pos = s.start
			}
		}
		if cap(buf) < copyBuffer && s.end-pos > int64(len(buf)) {
			buf = make([]byte, copyBuffer) // the claim grew
		}
		m, err := io.ReadFull(body, buf[:min(int64(len(buf)), s.end-pos)])
		if m > 0 {
			if werr := k.write(buf[:m], pos, s); werr != nil {
				return werr
			}
			pos += int64(m)
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			if pos < s.end {
				return upstreamFault(fmt.Errorf("read upstream: body ended at %d, before %d: %w", pos, s.end, io.ErrUnexpectedEOF))
			}
		case err != nil:
			return upstreamFault(fmt.Errorf("read upstream after %d bytes: %w", pos, err))
		}
	}
}

// write writes p at off into the flight, leaving out what is written
// already (an origin that ignored a range sends it again) and what another
// request has claimed (it writes that itself); own is the writer's claim.
func (k *chunker) write(p []byte, off int64, own span) error {
	end := off + int64(len(p))
	for off < end {
		ws, we := k.writable(off, end, own)
		if ws >= end {
			return nil
		}
		if err := k.p.Claim(we - ws); err != nil {
			return err
		}
		if _, err := k.f.WriteAt(p[ws-off:we-off], ws); err != nil {
			return k.p.Failed(fmt.Errorf("write pending file: %w", err))
		}
		p, off = p[we-off:], we
	}
	return nil
}

// writable returns the first bytes of [off, end) that are neither written
// nor claimed by another than own.
func (k *chunker) writable(off, end int64, own span) (int64, int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for off < end {
		_, gs, ge := k.f.Written(off, end)
		if gs >= end {
			break
		}
		ge = min(ge, end)
		moved := false
		for _, c := range k.claimed {
			switch {
			case c == own:
			case c.start <= gs && gs < c.end:
				off, moved = c.end, true
			case gs < c.start && c.start < ge:
				ge = c.start
			}
			if moved {
				break
			}
		}
		if !moved {
			return gs, ge
		}
	}
	return end, end
}
