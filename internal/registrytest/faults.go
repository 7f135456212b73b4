package registrytest

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Fail answers matching requests with status and an OCI error body, adding
// Retry-After (whole seconds, rounded up) when retryAfter is positive.
func Fail(m Match, status int, retryAfter time.Duration) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !matches(m, req) {
			return false
		}
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
		}
		code := "UNAVAILABLE"
		if status == http.StatusTooManyRequests {
			code = "TOOMANYREQUESTS"
		}
		refuse(w, status, "", code, fmt.Sprintf("injected failure %d", status))
		return true
	}
}

// Abort drops the connection of matching requests without any response.
func Abort(m Match) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !matches(m, req) {
			return false
		}
		panic(http.ErrAbortHandler)
	}
}

// Truncate cuts successful (2xx) responses to matching requests after
// `after` body bytes: the headers promise the full length, the bytes before
// the cut are flushed, then the connection is aborted, so the client reads an
// unexpected EOF. Bodies no longer than after are untouched.
func Truncate(m Match, after int64) Hook {
	return atOffset(m, after, func(w http.ResponseWriter, req *http.Request, rest []byte) []byte {
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
}

// Corrupt flips every bit of the body byte at offset `at` of successful
// (2xx) responses to matching requests: the length and headers stay right,
// the content (and so its digest) is wrong. Bodies no longer than at are
// untouched. Offsets count from the start of the response body, so for a
// Range response from the start of the range.
func Corrupt(m Match, at int64) Hook {
	return atOffset(m, at, func(w http.ResponseWriter, req *http.Request, rest []byte) []byte {
		bad := append([]byte(nil), rest...) // rest may be the registry's own storage
		bad[0] ^= 0xff
		return bad
	})
}

// Hold stops matching requests before they are served until release is
// closed, then lets them go on (to the next hook in a Chain, or to be
// served). If the client goes away or the registry closes first, the
// request ends without a response.
func Hold(m Match, release <-chan struct{}) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		return matches(m, req) && stopped(req, release)
	}
}

// HoldAfter sends the headers and the first `after` body bytes of successful
// (2xx) responses to matching requests, flushed, then stops until release is
// closed and sends the rest: a transfer caught in flight. If the client goes
// away or the registry closes meanwhile, the connection is aborted. Bodies no
// longer than after are untouched.
func HoldAfter(m Match, after int64, release <-chan struct{}) Hook {
	return atOffset(m, after, func(w http.ResponseWriter, req *http.Request, rest []byte) []byte {
		http.NewResponseController(w).Flush()
		if stopped(req, release) {
			panic(http.ErrAbortHandler)
		}
		return rest
	})
}

// Delay makes matching requests wait d before they go on, like a distant
// upstream. It is for benchmarks: tests synchronise with Hold instead.
func Delay(m Match, d time.Duration) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !matches(m, req) {
			return false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		return stopped(req, t.C)
	}
}

// Throttle paces the bodies of responses to matching requests to about
// bytesPerSecond, like a slow upstream link; zero or less means no limit. It
// is for benchmarks: tests synchronise with Hold and HoldAfter instead.
func Throttle(m Match, bytesPerSecond int64) Hook {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if bytesPerSecond <= 0 || !matches(m, req) {
			return false
		}
		Pass(&pacedWriter{ResponseWriter: w, req: req, rate: bytesPerSecond, start: time.Now()}, req)
		return true
	}
}
