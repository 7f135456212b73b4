package server

import (
	"errors"
	"io"
	"os"
	"time"
)

// How a streamed body reaches the connection (fasthttp v1.78, checked in its
// source: http.go writeBodyStream, writeBodyFixedSize, copyZeroAlloc,
// fixedSizeBodyWriter.ReadFrom; server.go serveConn):
//
//   - With a Content-Length, fasthttp copies the stream into a
//     fixedSizeBodyWriter. A stream that is an io.WriterTo is asked to
//     WriteTo it; a bare *os.File goes to the writer's ReadFrom, which
//     flushes the buffered headers (for files over 8 KiB) and calls
//     bufio.Writer.ReadFrom with the file inside an io.LimitedReader. With
//     the buffer empty, bufio hands that to the connection's ReadFrom, and
//     *net.TCPConn.ReadFrom sends an *io.LimitedReader around an *os.File
//     with sendfile(2). So the *os.File of a whole disk hit does reach
//     sendfile, provided the connection is the *net.TCPConn itself:
//     fasthttp's own MaxConnsPerIP wraps it in a type without ReadFrom,
//     which is why the per-IP limit is enforced by our listener instead
//     (limit.go), whose connection keeps ReadFrom.
//   - A plain wrapper around the file would lose that (the bytes would be
//     copied through user space), yet the server needs a hook to count
//     bytes, renew the write deadline and end the request. growingStream
//     therefore implements io.WriterTo and hands the file back to the
//     writer's ReadFrom in LimitedReader pieces of streamPiece bytes: each
//     piece is one sendfile run, with the deadline renewed and the bytes
//     counted between pieces. strace shows sendfile(2) calls of 1 MiB, and
//     BenchmarkServeBlob shows a disk hit keeping pace with a bare *os.File.
//   - A fill in flight is sent by the same growingStream, from a file of
//     its own that the cache's reader gives: each run of bytes already
//     written is one sendfile, and only the tail still arriving waits. A
//     disk hit is a file that grows no more (wholeFile): one run, which
//     never waits.
//   - Any other stream (a pass-through, an uncached stream, a fill where
//     the file cannot be opened again) is sent as its bytes arrive: a slow upstream must not leave a
//     client with nothing for seconds. Its headers are flushed before the
//     body (Response.ImmediateHeaderFlush), so the writer's buffer is empty
//     when readerStream.WriteTo hands the body to the fixed-size writer's
//     ReadFrom; bufio.Writer.ReadFrom then passes it straight to the
//     connection's ReadFrom, whose generic path (io.Copy) writes each read
//     at once. Written through the fixed-size writer's Write, a small read
//     would wait in fasthttp's 4 KiB buffer instead. A body of unknown size
//     goes out chunked, which fasthttp reads through Read and flushes chunk
//     by chunk. Over TLS the connection is given a ReadFrom of the same kind
//     (tls.go), since *tls.Conn has none.
//   - fasthttp's WriteTimeout is one deadline for the whole response,
//     headers and body, set when the handler returns (not per write), so
//     any value short enough to drop a stalled client would cut off a
//     multi-GiB layer. The streams below renew the connection's write
//     deadline (RequestCtx.SetWriteDeadline, which fasthttp clears after
//     the response) before each piece instead: a stall is bounded, a long
//     transfer is not.
//   - If Read (or WriteTo) fails, or the stream ends early, fasthttp stops,
//     closes the stream and closes the connection without sending the rest:
//     the client sees fewer bytes than Content-Length (or no final chunk),
//     a broken response rather than a short one that looks whole.
//   - fasthttp closes the stream after writing, or when the response is
//     reset without being written, calling CloseWithError with the write
//     error (nil on success). That is where the request ends: bytes are
//     counted, the access line is logged and the request's context is
//     cancelled.

// streamPiece is the most written between renewals of the write deadline.
const streamPiece = 1 << 20

// copyBufferSize is the buffer of readerStream.WriteTo: larger than
// fasthttp's own 4 KiB so that a write usually bypasses its buffered writer.
// One is allocated per streamed response, which is small beside the
// response.
const copyBufferSize = 32 << 10

// streamEnd is told once how a stream ended: the bytes handed to the
// connection and the error that stopped it (nil if fasthttp saw no error).
type streamEnd func(sent int64, err error)

// streamBase holds what both stream kinds share. It is used by the one
// goroutine fasthttp writes the response on, so it needs no lock.
type streamBase struct {
	body    io.ReadCloser
	sent    int64
	readErr error // the first error the body returned, for the log
	// renew pushes the connection's write deadline timeout into the future;
	// nil once the stream is closed (it holds the RequestCtx).
	renew   func(time.Time) error
	timeout time.Duration
	end     streamEnd
}

func (s *streamBase) renewDeadline() {
	if s.renew != nil {
		// Fails only once the connection is gone, which the write reports.
		_ = s.renew(time.Now().Add(s.timeout))
	}
}

// Read serves fasthttp when it does not use WriteTo (a chunked body).
func (s *streamBase) Read(p []byte) (int, error) {
	n, err := s.read(p)
	s.sent += int64(n)
	return n, err
}

// read reads the body, renewing the write deadline for the bytes it got
// (they are written next) and keeping the first error for the log.
func (s *streamBase) read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if n > 0 {
		s.renewDeadline()
	}
	if err != nil && err != io.EOF && s.readErr == nil {
		s.readErr = err
	}
	return n, err
}

// CloseWithError is called by fasthttp exactly when it is done with the
// stream, with the error that stopped writing, if any.
func (s *streamBase) CloseWithError(werr error) error {
	if s.end == nil {
		return nil
	}
	cerr := s.body.Close()
	err := werr
	if s.readErr != nil {
		err = s.readErr // the cause, rather than fasthttp's report of it
	}
	end := s.end
	s.end, s.renew = nil, nil
	end(s.sent, err)
	return cerr
}

// readerStream streams any body not sent from a file (a pass-through, an
// uncached stream, a multipart answer), each read handed to the connection
// as it comes (see the top of this file). Its headers must have been
// flushed.
type readerStream struct{ streamBase }

// WriteTo gives the body to w's ReadFrom when it has one (fasthttp's
// fixed-size writer always does), else copies it.
func (s *readerStream) WriteTo(w io.Writer) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return s.copyTo(w)
	}
	n, err := rf.ReadFrom(bodyReader{&s.streamBase})
	s.sent += n
	return n, err
}

// bodyReader is a stream's body as a bare io.Reader. It is neither an
// io.WriterTo nor a syscall.Conn, so a connection's ReadFrom takes its
// generic path and writes each read as it returns.
type bodyReader struct{ s *streamBase }

func (r bodyReader) Read(p []byte) (int, error) { return r.s.read(p) }

// copyTo copies the body to w, renewing the write deadline before each
// write so that only a stall, not a long transfer, times out.
func (s *streamBase) copyTo(w io.Writer) (int64, error) {
	buf := make([]byte, copyBufferSize)
	var n int64
	for {
		nr, rerr := s.body.Read(buf)
		if nr > 0 {
			s.renewDeadline()
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			s.sent += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			s.readErr = rerr
			return n, rerr
		}
	}
}

var errShortFile = errors.New("server: file ended before its size")

// fileSender is a body whose bytes lie in a file, possibly still being
// written: a reader of a fill in flight, or a wholeFile. Next waits until
// some of its bytes are written and gives a file positioned at them (of its
// own, for a fill: not the flight's, whose offset others would move), and
// how many may be sent; Advance says how many were. At the end, Next
// returns io.EOF.
type fileSender interface {
	Next() (*os.File, int64, error)
	Advance(n int64)
}

// wholeFile is a fileSender of the next left bytes of f, a file written
// already (a disk hit, or a window of one): one run, whose Next never
// waits.
type wholeFile struct {
	f    *os.File
	left int64
}

func (w *wholeFile) Next() (*os.File, int64, error) {
	if w.left <= 0 {
		return nil, 0, io.EOF
	}
	return w.f, w.left, nil
}

func (w *wholeFile) Advance(n int64) { w.left -= n }

// growingStream sends the bytes of a file, possibly still growing, with
// sendfile, run by run as they are written: only the tail still arriving
// waits, and the bytes already on disk cost no copy through user space.
type growingStream struct {
	streamBase
	src fileSender
	// whole is src for a file written already, held here so that the
	// stream is the only allocation.
	whole wholeFile
}

// newFileStream is a growingStream of n bytes of f, written already, from
// its current offset; base.body still closes it.
func newFileStream(base streamBase, f *os.File, n int64) *growingStream {
	s := &growingStream{streamBase: base, whole: wholeFile{f: f, left: n}}
	s.src = &s.whole
	return s
}

func (s *growingStream) WriteTo(w io.Writer) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		// Not fasthttp's fixed-size writer: copy like any reader.
		return s.copyTo(w)
	}
	var n int64
	for {
		f, avail, err := s.src.Next()
		switch {
		case errors.Is(err, io.EOF):
			return n, nil
		case errors.Is(err, errors.ErrUnsupported) && n == 0:
			return s.copyTo(w) // no file to send from: read instead
		case err != nil:
			s.readErr = err
			return n, err
		}
		for avail > 0 {
			want := min(streamPiece, avail)
			s.renewDeadline()
			m, err := rf.ReadFrom(&io.LimitedReader{R: f, N: want})
			n += m
			s.sent += m
			avail -= m
			s.src.Advance(m)
			if err != nil {
				return n, err
			}
			if m < want {
				// The file is shorter than the size its entry promised.
				s.readErr = errShortFile
				return n, errShortFile
			}
		}
	}
}

// newBodyStream is the stream that sends base.body, of n bytes (-1:
// unknown), the best way it can: from its file with sendfile when it has
// one and n is known (a disk hit, a window of one, a fill in flight), else
// each read as it returns. flush says that the headers must go out before
// the body: the first byte may be long in coming, and a body sent as it
// comes needs the writer's buffer empty (see the top of this file).
func newBodyStream(base streamBase, n int64) (stream io.Reader, flush bool) {
	if n >= 0 {
		switch b := base.body.(type) {
		case *os.File:
			return newFileStream(base, b, n), false
		case interface{ File() (*os.File, error) }:
			// A window of a disk hit offers its file positioned at the
			// window, so that a Range is sent with sendfile too.
			if f, err := b.File(); err == nil {
				return newFileStream(base, f, n), false
			}
		}
		if src, ok := base.body.(fileSender); ok {
			return &growingStream{streamBase: base, src: src}, true
		}
	}
	return &readerStream{base}, true
}
