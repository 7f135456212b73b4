package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/cacheyd/cacheyd/oci"
)

// TestEveryAnswerGivesBackItsFill: a request for content in flight takes a
// reference to the fill, and every way of answering it (the headers of a
// HEAD, a 416, a window, several windows) gives back exactly that one while
// another reader streams the whole object. Were an answer to give it back
// twice, the fill's references would run out under that reader (its file
// closed, later requests unable to join it and fetching again); were one
// to keep it, the fill's file would stay open after everything ended.
func TestEveryAnswerGivesBackItsFill(t *testing.T) {
	const size, rounds = 64 << 10, 2
	c, dg, gate := gatedBlob(t, size)
	data := testData(size)
	ts := startServer(t, Config{}, c)
	target := "/v2/app/blobs/" + string(dg)

	// The reader that holds the fill: the gate keeps its second half.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://cacheyd.test"+target, nil)
	whole, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Body.Close()
	first := make([]byte, size/2)
	if _, err := io.ReadFull(whole.Body, first); err != nil {
		t.Fatalf("first half: %v", err)
	}

	answers := []struct {
		name, method, rng string
		wantStatus        int
		check             func(t *testing.T, resp *http.Response, body []byte)
	}{
		{"head", http.MethodHead, "", http.StatusOK, func(t *testing.T, resp *http.Response, body []byte) {
			if resp.ContentLength != size || len(body) != 0 {
				t.Errorf("HEAD: Content-Length %d, %d body bytes; want %d, none", resp.ContentLength, len(body), size)
			}
		}},
		{"window", http.MethodGet, "bytes=100-199", http.StatusPartialContent, func(t *testing.T, _ *http.Response, body []byte) {
			if !bytes.Equal(body, data[100:200]) {
				t.Errorf("window: %q, want %q", body, data[100:200])
			}
		}},
		{"windows", http.MethodGet, "bytes=0-9,100-199", http.StatusPartialContent, func(t *testing.T, resp *http.Response, body []byte) {
			parts := readParts(t, resp.Header.Get("Content-Type"), body)
			if len(parts) != 2 || parts[0].body != string(data[:10]) || parts[1].body != string(data[100:200]) {
				t.Errorf("windows: %d parts %+v", len(parts), parts)
			}
		}},
		{"unsatisfiable", http.MethodGet, "bytes=" + strconv.Itoa(size) + "-", http.StatusRequestedRangeNotSatisfiable, func(t *testing.T, _ *http.Response, body []byte) {
			if code := errorCode(t, body); code != oci.CodeRangeInvalid {
				t.Errorf("416 code %q, want %s", code, oci.CodeRangeInvalid)
			}
		}},
	}
	for round := range rounds {
		for _, a := range answers {
			t.Run(fmt.Sprintf("%s %d", a.name, round), func(t *testing.T) {
				h := http.Header{}
				if a.rng != "" {
					h.Set("Range", a.rng)
				}
				resp, body, err := ts.do(t, a.method, target, h)
				if err != nil || resp.StatusCode != a.wantStatus {
					t.Fatalf("%s %s: status %d, %v; want %d", a.method, a.rng, resp.StatusCode, err, a.wantStatus)
				}
				a.check(t, resp, body)
			})
		}
	}
	// Every answer has ended (its access line is logged once its stream is
	// closed); the whole object's reader still reads.
	ts.logs.wait(t, rounds*len(answers))
	if n := c.origin.Count(http.MethodGet, oci.KindBlob, string(dg)); n != 1 {
		t.Errorf("%d upstream GETs, want 1: an answer gave back more than it took", n)
	}
	close(gate)
	rest, err := io.ReadAll(whole.Body)
	if err != nil || !bytes.Equal(append(first, rest...), data) {
		t.Fatalf("the whole object: %d+%d bytes, %v; want %d intact", len(first), len(rest), err, size)
	}
	ts.logs.wait(t, rounds*len(answers)+1)
	c.closeReleased(t)
}

// TestStreamClosesBodyOnce: every kind of stream newBodyStream makes, however
// its response ends (written whole, cut by a failed write, dropped
// unwritten, and reset again after any of these), closes its body exactly
// once and ends its request exactly once.
func TestStreamClosesBodyOnce(t *testing.T) {
	const size = 64 << 10
	data := testData(size)
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T) *os.File {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Each body returns its count of closes.
	bodies := []struct {
		name, stream string // the stream newBodyStream picks
		n            int64
		body         func(t *testing.T) (io.ReadCloser, func() int)
	}{
		{"disk hit", "*server.growingStream", size, func(t *testing.T) (io.ReadCloser, func() int) {
			// The *os.File itself: closed once it is, which a Close
			// after says (a second close of a file does no harm).
			f := open(t)
			return f, func() int {
				if errors.Is(f.Close(), os.ErrClosed) {
					return 1
				}
				return 0
			}
		}},
		{"window of a disk hit", "*server.growingStream", size, func(t *testing.T) (io.ReadCloser, func() int) {
			f := open(t)
			b := &countedWindow{counted: counted{r: io.NewSectionReader(f, 0, size), c: f}, f: f}
			return b, b.count
		}},
		{"fill in flight", "*server.growingStream", size, func(t *testing.T) (io.ReadCloser, func() int) {
			f := open(t)
			b := &countedSender{wholeFile: wholeFile{f: f, left: size}, counted: counted{r: f, c: f}}
			return b, b.count
		}},
		{"reader", "*server.readerStream", size, func(t *testing.T) (io.ReadCloser, func() int) {
			b := &counted{r: bytes.NewReader(data)}
			return b, b.count
		}},
		{"reader, chunked", "*server.readerStream", -1, func(t *testing.T) (io.ReadCloser, func() int) {
			b := &counted{r: bytes.NewReader(data)}
			return b, b.count
		}},
	}
	ends := []struct {
		name string
		end  func(t *testing.T, resp *fasthttp.Response) error
	}{
		{"written", func(t *testing.T, resp *fasthttp.Response) error {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			if err := resp.Write(w); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			got, err := http.ReadResponse(bufio.NewReader(&out), nil)
			if err != nil {
				t.Fatal(err)
			}
			if body, err := io.ReadAll(got.Body); err != nil || !bytes.Equal(body, data) {
				t.Errorf("body: %d bytes, %v; want %d", len(body), err, size)
			}
			return nil
		}},
		{"write fails", func(t *testing.T, resp *fasthttp.Response) error {
			err := resp.Write(bufio.NewWriterSize(&failingWriter{left: size / 4}, 4096))
			if err == nil {
				t.Error("a failing write went unreported")
			}
			return err
		}},
		{"dropped", func(t *testing.T, resp *fasthttp.Response) error {
			resp.Reset() // as fasthttp does with a response it never writes
			return nil
		}},
	}
	for _, bt := range bodies {
		for _, et := range ends {
			t.Run(bt.name+" "+et.name, func(t *testing.T) {
				body, closes := bt.body(t)
				var endCalls int
				var endErr error
				base := streamBase{body: body, end: func(_ int64, err error) { endCalls++; endErr = err }}
				stream, _ := newBodyStream(base, bt.n)
				if got := fmt.Sprintf("%T", stream); got != bt.stream {
					t.Errorf("stream %s, want %s", got, bt.stream)
				}
				var resp fasthttp.Response
				resp.SetBodyStream(stream, int(bt.n))
				werr := et.end(t, &resp)
				resp.Reset() // a response reused after: nothing is left to close
				if n := closes(); n != 1 {
					t.Errorf("body closed %d times, want 1", n)
				}
				if endCalls != 1 {
					t.Errorf("request ended %d times, want 1", endCalls)
				}
				if (werr != nil) != (endErr != nil) {
					t.Errorf("request ended with %v after the write's %v", endErr, werr)
				}
			})
		}
	}
}

// counted is a body that counts its closes.
type counted struct {
	r      io.Reader
	c      io.Closer // closed with the body, if set
	closes int
}

func (b *counted) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *counted) Close() error {
	b.closes++
	if b.c != nil && b.closes == 1 {
		return b.c.Close()
	}
	return nil
}

func (b *counted) count() int { return b.closes }

// countedWindow is a window of a file that offers the file positioned at
// it, as the disk tier's windows do.
type countedWindow struct {
	counted
	f *os.File
}

func (b *countedWindow) File() (*os.File, error) {
	_, err := b.f.Seek(0, io.SeekStart)
	return b.f, err
}

// countedSender is a file sent run by run, as a fill's reader is.
type countedSender struct {
	wholeFile
	counted
}

// failingWriter fails every write once left bytes are written.
type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errors.New("failingWriter: connection reset")
	}
	w.left -= len(p)
	return len(p), nil
}
