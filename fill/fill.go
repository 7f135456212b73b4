package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cacheyd/cacheyd/flight"
	"github.com/cacheyd/cacheyd/oci"
)

// Buffer is the size of one write of a fill: readers are woken once per
// write. It is also most of what each of a fill's requests holds in memory,
// whatever its source announces.
const Buffer = 128 << 10

// defaultChunk is Config.Chunk's zero value.
const defaultChunk = 16 << 20

// Source is where a fill's bytes come from: an origin, with its retries.
// Errors that are a registry's answer are *oci.Error.
type Source interface {
	Fetch(ctx context.Context, req *oci.Request) (*oci.Response, error)
}

// Notifier is what a Source may add: FetchNotify is Fetch that tells
// failed of each attempt that failed before the source answered and that
// is tried again (retry.Origin has it). Run passes Job.Failed to it for the
// first request, so that those waiting for the fill can be told at once
// while the attempts go on.
type Notifier interface {
	FetchNotify(ctx context.Context, req *oci.Request, failed func(error)) (*oci.Response, error)
}

// Pending is the file a fill writes into until its caller keeps it: a
// pending file of the disk tier.
type Pending interface {
	// File is what the flight writes and reads. Run closes it, if it is
	// an io.Closer, once the flight's last reference is gone.
	File() flight.File
	// Claim counts n more bytes about to be written, before they are:
	// room is claimed as bytes arrive, never as a size is announced.
	Claim(n int64) error
	// Failed turns a failed write of the file into the fill's error.
	Failed(err error) error
	// Abort removes the file; Run calls it when the fill fails.
	Abort()
}

// Config is how fills fetch. Every zero value has a meaning.
type Config struct {
	// Chunk is the largest region of a blob fetched in one request, in
	// bytes. Zero means 16 MiB.
	Chunk int64
	// Parallel is how many requests one fill makes to its source at once,
	// with up to Rescuers(Parallel) more for readers no request is heading
	// for. Zero or 1 fetches every object as one stream.
	Parallel int
	// MaxManifest is the largest manifest taken, in bytes. Zero means
	// oci.MaxManifestSize.
	MaxManifest int64
	// Rescued, when not nil, is told of each request made for a stranded
	// reader.
	Rescued func()
}

// Job is one fill.
type Job struct {
	Config
	// Flight is where the bytes go. Run opens it; the caller finishes it
	// once Run has returned.
	Flight *flight.Flight
	// Request asks the source for the whole object (its Offset, Length
	// and Suffix are not looked at); its Kind says manifest or blob.
	Request oci.Request
	// Window is what the request that started the fill asked for, fetched
	// first when the blob is fetched in regions; zero means none.
	Window oci.Window
	// Source is where the bytes come from.
	Source Source
	// Create makes the pending file once the source has answered, with the
	// object's size (-1: unknown) and the source's media type. It runs
	// before the flight opens, so what it records is there for every
	// reader.
	Create func(size int64, mediaType string) (Pending, error)
	// Failed, when not nil, is told of each failed attempt of the first
	// request, if Source is a Notifier.
	Failed func(error)
}

// Result is what a fill did.
type Result struct {
	// Written is how many bytes were written: the object's size on
	// success.
	Written int64
	// MediaType is the source's Content-Type for the object; empty when it
	// named none.
	MediaType string
	// Pending holds the verified object on success, for the caller to
	// keep; nil on failure (Run aborted it).
	Pending Pending
}

// Rescuers is how many requests a fill of parallel regular ones may make
// beyond them for stranded readers: half as many again, so that a fill
// holds at most 1.5× Parallel requests and buffers; none for a fill that
// is one stream.
func Rescuers(parallel int) int {
	if parallel <= 1 {
		return 0
	}
	return max(1, parallel/2)
}

// Run fetches job's object from its source into its flight and verifies
// it. It returns the verified object's pending file for the caller to
// keep; on failure it has aborted the pending file, and the Result still
// says how many bytes were written.
func Run(ctx context.Context, job Job) (Result, error) {
	if job.Chunk <= 0 {
		job.Chunk = defaultChunk
	}
	req := job.Request
	req.Method, req.Offset, req.Length, req.Suffix = http.MethodGet, 0, 0, 0
	limit := int64(-1)
	if req.Kind == oci.KindManifest {
		limit = job.MaxManifest
		if limit <= 0 {
			limit = oci.MaxManifestSize
		}
	}
	// The first request of a blob fetched in regions asks for the
	// starter's window, else for the first chunk (see the package doc).
	first := req
	if req.Kind == oci.KindBlob && job.Parallel > 1 {
		first.Offset, first.Length, first.Suffix = job.Window.Offset, job.Window.Length, job.Window.Suffix
		if job.Window == (oci.Window{}) {
			first.Length = job.Chunk
		}
	}
	resp, err := job.fetchFirst(ctx, &first)
	if e, ok := oci.AsError(err); ok && e.Status == http.StatusRequestedRangeNotSatisfiable && first.Offset+first.Length+first.Suffix > 0 {
		// The starter's window is not in the object (its client asked for
		// bytes past the end): the whole object, then.
		resp, err = job.fetchFirst(ctx, &req)
	}
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	res := Result{MediaType: resp.MediaType}
	switch {
	case resp.Digest != "" && resp.Digest != job.Flight.Digest():
		return res, Fault(fmt.Errorf("upstream answered with digest %s", resp.Digest.Short()))
	case limit >= 0 && resp.Size > limit:
		return res, oci.ErrTooLarge(fmt.Sprintf("manifest of %d bytes exceeds %d", resp.Size, limit))
	}
	p, err := job.Create(resp.Size, resp.MediaType)
	if err != nil {
		return res, err
	}
	file := p.File()
	job.Flight.Open(file, resp.Size, func() {
		if c, ok := file.(io.Closer); ok {
			_ = c.Close()
		}
	})
	whole := resp.Offset == 0 && (resp.End <= 0 || resp.End == resp.Size)
	if resp.Size >= 0 && req.Kind == oci.KindBlob && (!whole || (resp.Size > job.Chunk && job.Parallel > 1)) {
		r := &regions{f: job.Flight, p: p, src: job.Source, req: req, size: resp.Size, chunk: job.Chunk, rescued: job.Rescued}
		hinted := job.Window != (oci.Window{}) || first.Length > 0
		if err = r.run(ctx, resp, max(job.Parallel, 1), Rescuers(job.Parallel), hinted); err == nil {
			res.Written = resp.Size
		}
	} else {
		res.Written, err = copyInto(job.Flight, p, resp.Body, resp.Size, limit)
	}
	if err == nil {
		if err = job.Flight.Verify(res.Written); err != nil {
			err = Fault(err)
		}
	}
	if err != nil {
		p.Abort()
		return res, err
	}
	res.Pending = p
	return res, nil
}

// fetchFirst makes the fill's first request, telling Failed of its failed
// attempts when the source can.
func (job *Job) fetchFirst(ctx context.Context, req *oci.Request) (*oci.Response, error) {
	if n, ok := job.Source.(Notifier); ok && job.Failed != nil {
		return n.FetchNotify(ctx, req, job.Failed)
	}
	return job.Source.Fetch(ctx, req)
}

// Fault marks err, met while reading what the source sent, as the
// registry's doing (oci.ErrUpstreamFault): a replica asking this one is
// told so (oci.RelayedHeader) and does not fetch it again around this one.
// An error that is the registry's already, or a cancellation, is left as
// it is.
func Fault(err error) error {
	if oci.FromUpstream(err) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", oci.ErrUpstreamFault, err)
}
