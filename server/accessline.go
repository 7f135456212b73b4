package server

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// The access line is written by hand when Config.AccessLog is set: through
// slog it is the largest cost of a memory hit (a record, its attributes
// copied twice, a lock and reflection-free but general formatting: about
// 4 µs and 5 allocations a line), and a registry mirror writes one for
// every request. What is written here is, byte for byte, what
// slog.NewTextHandler writes for the same attributes (accessline_test.go
// holds the two side by side), so that a reader of the log cannot tell
// which wrote a line.

// linePool holds the buffers access lines are formatted in; a line is
// about 300 bytes.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeLine formats x's access line at time now and writes it to w with
// one Write, which is what keeps it whole among other writers of w.
func (x *exchange) writeLine(w io.Writer, now time.Time, level slog.Level) {
	bp := linePool.Get().(*[]byte)
	b := x.appendLine((*bp)[:0], now, level)
	_, _ = w.Write(b) // a log that cannot be written has nowhere to say so
	if cap(b) <= 4096 {
		*bp = b
		linePool.Put(bp)
	}
}

// appendLine appends the access line, in slog's text format: the record's
// time (milliseconds, local zone), level and message, then the attributes
// exchange.log would give slog, in the same order.
func (x *exchange) appendLine(b []byte, now time.Time, level slog.Level) []byte {
	b = append(b, "time="...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " level="...)
	b = appendText(b, level.String())
	b = append(b, " msg=request method="...)
	b = appendText(b, x.method)
	if r := x.req; r != nil && r.Repository != "" {
		b = append(b, " registry="...)
		b = appendText(b, r.Registry)
		b = append(b, " repository="...)
		b = appendText(b, r.Repository)
		b = append(b, " reference="...)
		if r.Reference.IsDigest() {
			b = appendShortDigest(b, r.Reference.Digest.Algorithm(), r.Reference.Digest.Hex())
		} else {
			b = appendText(b, r.Reference.Tag)
		}
	}
	b = append(b, " kind="...)
	b = appendText(b, x.kind)
	if x.path != "" {
		b = append(b, " path="...)
		b = appendText(b, quoteShort(x.path))
	}
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(x.status), 10)
	if x.source != "" {
		b = append(b, " source="...)
		b = appendText(b, x.source)
	}
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, x.sent, 10)
	b = append(b, " duration="...)
	b = append(b, now.Sub(x.start).String()...)
	if x.contentRange != "" {
		b = append(b, " range="...)
		b = appendText(b, x.contentRange)
	}
	b = append(b, " remote="...)
	b = appendRemote(b, x.remote)
	if x.closed {
		b = append(b, " client_closed=true"...)
	}
	if x.err != nil {
		b = append(b, " err="...)
		b = appendText(b, x.err.Error())
	}
	return append(b, '\n')
}

// appendShortDigest appends what oci.Digest.Short returns (the algorithm
// and the first 12 hex digits) without building the string.
func appendShortDigest(b []byte, algorithm, hex string) []byte {
	if len(hex) > 12 {
		hex = hex[:12]
	}
	start := len(b)
	b = append(b, algorithm...)
	b = append(b, ':')
	b = append(b, hex...)
	if needsQuote(string(b[start:])) { // only a digest that failed to parse
		return strconv.AppendQuote(b[:start], string(b[start:]))
	}
	return b
}

// appendRemote appends the client's address as net.Addr's String gives it,
// without allocating for a TCP address.
func appendRemote(b []byte, a net.Addr) []byte {
	t, ok := a.(*net.TCPAddr)
	if !ok || t == nil {
		if a == nil {
			return appendText(b, "<nil>")
		}
		return appendText(b, a.String())
	}
	ap := t.AddrPort()
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		b = append(b, '[')
		b = ip.AppendTo(b)
		b = append(b, ']', ':')
	} else {
		b = ip.AppendTo(b)
		b = append(b, ':')
	}
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

// appendText appends s as slog's text handler writes a string value: bare,
// or Go-quoted when it is empty or holds a space, '=', '"', a control
// character, or a rune that is invalid, a space or not printable.
func appendText(b []byte, s string) []byte {
	if needsQuote(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == ' ' || c == '=' || c == '"' {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += n
	}
	return false
}
