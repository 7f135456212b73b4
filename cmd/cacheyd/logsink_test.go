package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestLogSinkKeepsLinesWhole: concurrent writers' lines arrive whole and
// all of them by Close.
func TestLogSinkKeepsLinesWhole(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	s := newLogSink(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) }))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				s.Write([]byte(strings.Repeat(string(rune('a'+i)), 99) + "\n"))
			}
		}()
	}
	wg.Wait()
	s.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		if len(l) != 99 || strings.Trim(l, l[:1]) != "" {
			t.Fatalf("torn line %q", l)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
