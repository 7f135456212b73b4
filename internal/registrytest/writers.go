package registrytest

import (
	"net/http"
	"time"
)

// atOffset serves matching requests through an offsetWriter.
func atOffset(m Match, off int64, at func(w http.ResponseWriter, req *http.Request, rest []byte) []byte) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !matches(m, req) {
			return false
		}
		Pass(&offsetWriter{ResponseWriter: w, req: req, off: off, at: at}, req)
		return true
	}
}

// offsetWriter calls at once, just before the body byte at offset off of a
// 2xx response goes out, and writes what at returns in place of the rest of
// that write. at may also block, or panic to abort the connection.
type offsetWriter struct {
	http.ResponseWriter
	req    *http.Request
	off    int64 // body offset at which at runs
	at     func(w http.ResponseWriter, req *http.Request, rest []byte) []byte
	n      int64 // body bytes written so far
	status int   // 0 until the header is written
	skip   bool  // not a 2xx response, or at already ran
}

func (w *offsetWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
		w.skip = status > 299
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *offsetWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.skip || w.n+int64(len(p)) <= w.off {
		n, err := w.ResponseWriter.Write(p)
		w.n += int64(n)
		return n, err
	}
	k := w.off - w.n
	n, err := w.ResponseWriter.Write(p[:k])
	w.n += int64(n)
	if err != nil {
		return n, err
	}
	w.skip = true
	rest := w.at(w.ResponseWriter, w.req, p[k:])
	m, err := w.ResponseWriter.Write(rest)
	w.n += int64(m)
	return n + m, err
}

func (w *offsetWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *offsetWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// pacedWriter writes the body in small flushed pieces, each no earlier than
// the rate allows.
type pacedWriter struct {
	http.ResponseWriter
	req   *http.Request
	rate  int64 // bytes per second
	start time.Time
	sent  int64 // body bytes written so far
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	piece := max(int(w.rate/50), 512) // about 20ms of transfer
	written := 0
	for len(p) > 0 {
		due := w.start.Add(time.Duration(float64(w.sent) / float64(w.rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			aborted := stopped(w.req, t.C)
			t.Stop()
			if aborted {
				panic(http.ErrAbortHandler)
			}
		}
		k := min(len(p), piece)
		n, err := w.ResponseWriter.Write(p[:k])
		written += n
		w.sent += int64(n)
		if err != nil {
			return written, err
		}
		http.NewResponseController(w.ResponseWriter).Flush()
		p = p[k:]
	}
	return written, nil
}

func (w *pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *pacedWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }
