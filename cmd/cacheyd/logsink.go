package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// logSink batches log output: one access line per request written straight
// to stderr costs a system call each, which at tens of thousands of
// requests a second is a tenth of the CPU. Lines are kept whole (slog writes
// each record with one Write) and reach the output within flushEvery, when
// the buffer fills, on Flush, and on Close. A crash may lose the last
// flushEvery of lines.
type logSink struct {
	mu sync.Mutex // guards w
	w  *bufio.Writer

	stop chan struct{}
	done chan struct{}
}

const (
	logBufferSize = 64 << 10
	flushEvery    = 100 * time.Millisecond
)

func newLogSink(out io.Writer) *logSink {
	s := &logSink{w: bufio.NewWriterSize(out, logBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	// Stops when Close closes s.stop.
	go func() {
		defer close(s.done)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.Flush()
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Flush writes out what is buffered.
func (s *logSink) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.w.Flush() // stderr failing leaves nowhere to report it
}

// Close stops the flushing and writes out the rest.
func (s *logSink) Close() {
	close(s.stop)
	<-s.done
	s.Flush()
}
