package server

import (
	"math"
	"strconv"
	"strings"

	"github.com/cacheyd/cacheyd/oci"
)

// rangeResult says what to do with a request's Range header.
type rangeResult uint8

const (
	// rangeIgnore: send the whole representation with 200. Used for no
	// Range, several ranges, another unit, or anything malformed, as RFC
	// 9110 §14.2 allows ("a server MAY ignore the Range header field").
	rangeIgnore rangeResult = iota
	// rangeOK: send the window with 206 and Content-Range.
	rangeOK
	// rangeUnsatisfiable: send 416 with "Content-Range: bytes */size".
	rangeUnsatisfiable
)

// byteRange is a satisfiable window of a representation.
type byteRange struct {
	start, length int64
}

// contentRange is the Content-Range value of a 206.
func (r byteRange) contentRange(size int64) string {
	return "bytes " + strconv.FormatInt(r.start, 10) + "-" + strconv.FormatInt(r.start+r.length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

// maxRangeHeader bounds the Range header parsed; one range of two 19-digit
// numbers fits with plenty of room for whitespace.
const maxRangeHeader = 128

// parseRange interprets a Range header against a representation of size
// bytes (RFC 9110 §14.1). Exactly one range-spec is honoured:
//
//	bytes=N-    from N to the end
//	bytes=N-M   from N to M inclusive (M past the end is clipped)
//	bytes=-N    the last N bytes (the whole if N >= size)
//
// A first byte at or past the end, or a zero-length suffix, is
// unsatisfiable. Several ranges are parseRanges' business (a multipart
// answer); here they are ignored. A size below 1
// (unknown, or empty content, which has no byte to select) ignores Range.
// Numbers too large for int64 saturate: a huge first byte is
// unsatisfiable, a huge last byte or suffix means "to the end".
func parseRange(h string, size int64) (byteRange, rangeResult) {
	if h == "" || size <= 0 || len(h) > maxRangeHeader {
		return byteRange{}, rangeIgnore
	}
	unit, spec, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return byteRange{}, rangeIgnore
	}
	return parseSpec(spec, size)
}

// parseSpec interprets one range-spec, as parseRange describes.
func parseSpec(spec string, size int64) (byteRange, rangeResult) {
	first, last, ok := strings.Cut(strings.Trim(spec, " \t"), "-")
	if !ok {
		return byteRange{}, rangeIgnore
	}
	if first == "" {
		n, ok := parseDigits(last)
		switch {
		case !ok:
			return byteRange{}, rangeIgnore
		case n == 0:
			return byteRange{}, rangeUnsatisfiable
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, rangeOK
	}
	start, ok := parseDigits(first)
	if !ok {
		return byteRange{}, rangeIgnore
	}
	end := int64(math.MaxInt64)
	if last != "" {
		if end, ok = parseDigits(last); !ok || end < start {
			// last < first makes the range-spec invalid, not unsatisfiable.
			return byteRange{}, rangeIgnore
		}
	}
	if start >= size {
		return byteRange{}, rangeUnsatisfiable
	}
	end = min(end, size-1)
	return byteRange{start: start, length: end - start + 1}, rangeOK
}

// maxRanges bounds the ranges of one request answered with
// multipart/byteranges; a request with more gets the whole object.
const maxRanges = 32

// maxRangesHeader bounds a Range header with several range-specs.
const maxRangesHeader = maxRanges * 48

// parseRanges interprets a Range header of one or more range-specs against
// a representation of size bytes, as net/http's ServeContent does: specs
// that are unsatisfiable are left out (all of them: unsatisfiable); any
// malformed one, more than maxRanges, or ranges adding up to more than the
// object ignore the header (the whole object, 200).
func parseRanges(h string, size int64) ([]byteRange, rangeResult) {
	if !strings.Contains(h, ",") {
		r, res := parseRange(h, size)
		if res != rangeOK {
			return nil, res
		}
		return []byteRange{r}, rangeOK
	}
	if size <= 0 || len(h) > maxRangesHeader {
		return nil, rangeIgnore
	}
	unit, specs, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, rangeIgnore
	}
	var out []byteRange
	var sum int64
	n := 0
	for spec := range strings.SplitSeq(specs, ",") {
		if n++; n > maxRanges {
			return nil, rangeIgnore
		}
		r, res := parseSpec(spec, size)
		switch res {
		case rangeIgnore:
			return nil, rangeIgnore
		case rangeOK:
			out = append(out, r)
			sum += r.length
		}
	}
	switch {
	case len(out) == 0:
		return nil, rangeUnsatisfiable
	case sum > size:
		return nil, rangeIgnore
	}
	return out, rangeOK
}

// parseDigits parses a non-empty run of ASCII digits, saturating at
// math.MaxInt64. Signs, spaces and anything else make it fail.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// wantsOf reads a Range header, before the size is known, as the window a
// client will read first: a hint for a cold fill, which fetches those bytes
// first. Only the first range-spec counts; anything malformed is the whole
// object (the zero Window).
func wantsOf(h string) oci.Window {
	if h == "" || len(h) > maxRangeHeader {
		return oci.Window{}
	}
	unit, spec, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return oci.Window{}
	}
	spec, _, _ = strings.Cut(spec, ",")
	first, last, ok := strings.Cut(strings.Trim(spec, " \t"), "-")
	if !ok {
		return oci.Window{}
	}
	if first == "" {
		if n, ok := parseDigits(last); ok && n > 0 {
			return oci.Window{Suffix: n}
		}
		return oci.Window{}
	}
	start, ok := parseDigits(first)
	if !ok {
		return oci.Window{}
	}
	if last == "" {
		return oci.Window{Offset: start}
	}
	end, ok := parseDigits(last)
	switch {
	case !ok || end < start:
		return oci.Window{}
	case end == math.MaxInt64: // past any object: to the end
		return oci.Window{Offset: start}
	}
	return oci.Window{Offset: start, Length: end - start + 1}
}
