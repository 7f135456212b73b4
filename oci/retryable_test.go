package oci

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"
)

// TestErrorAnswers: each status class, answered by the error itself and
// through a wrapping error by the package's helpers.
func TestErrorAnswers(t *testing.T) {
	tests := []struct {
		status             int
		retryable, refused bool
	}{
		{http.StatusBadRequest, false, false},
		{http.StatusUnauthorized, false, true},
		{http.StatusForbidden, false, true},
		{http.StatusNotFound, false, false},
		{http.StatusMethodNotAllowed, false, false},
		{http.StatusRequestEntityTooLarge, false, false},
		{http.StatusRequestedRangeNotSatisfiable, false, false},
		{http.StatusTooManyRequests, true, false},
		{http.StatusInternalServerError, true, false},
		{http.StatusBadGateway, true, false},
		{http.StatusServiceUnavailable, true, false},
		{http.StatusGatewayTimeout, true, false},
		{http.StatusLoopDetected, true, false},
	}
	for _, tt := range tests {
		e := &Error{Status: tt.status, Code: codeForStatus(KindBlob, tt.status)}
		wrapped := fmt.Errorf("fetching: %w", e)
		if got := e.Retryable(); got != tt.retryable {
			t.Errorf("%d: Retryable() = %v, want %v", tt.status, got, tt.retryable)
		}
		if got := Retryable(wrapped); got != tt.retryable {
			t.Errorf("%d: Retryable(wrapped) = %v, want %v", tt.status, got, tt.retryable)
		}
		if got := e.Refused(); got != tt.refused {
			t.Errorf("%d: Refused() = %v, want %v", tt.status, got, tt.refused)
		}
		if got := Refused(wrapped); got != tt.refused {
			t.Errorf("%d: Refused(wrapped) = %v, want %v", tt.status, got, tt.refused)
		}
		if got := RefusedStatus(tt.status); got != tt.refused {
			t.Errorf("RefusedStatus(%d) = %v, want %v", tt.status, got, tt.refused)
		}
		if d, ok := e.RetryAfter(); ok || d != 0 {
			t.Errorf("%d without Retry-After: RetryAfter() = %v, %v, want 0, false", tt.status, d, ok)
		}
	}
}

// TestRetryableErrors: what is not an Error's own answer.
func TestRetryableErrors(t *testing.T) {
	relayed := &Error{Status: http.StatusBadGateway, Upstream: true, Err: ErrRelayed}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unreachable", fmt.Errorf("upstream r: %w: dial tcp: refused", ErrUpstreamUnavailable), true},
		{"timed out before headers", fmt.Errorf("%w: %w", ErrUpstreamUnavailable, ErrUpstreamTimeout), true},
		{"a cut body", fmt.Errorf("body: %w", errors.New("unexpected EOF")), true},
		{"the deadline", context.DeadlineExceeded, true},
		{"the caller's cancellation", fmt.Errorf("reading: %w", context.Canceled), false},
		{"a stall (its attempt cancelled)", fmt.Errorf("%w: %w", ErrStalled, context.Canceled), true},
		{"relayed", fmt.Errorf("cluster: %w", relayed), false},
		{"relayed, not an Error", fmt.Errorf("%w: %w", ErrRelayed, ErrUpstreamUnavailable), false},
		{"a refusal wrapping unavailable", &Error{Status: http.StatusForbidden, Err: ErrUpstreamUnavailable}, false},
	}
	for _, tt := range tests {
		if got := Retryable(tt.err); got != tt.want {
			t.Errorf("%s: Retryable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	for _, err := range []error{nil, ErrUpstreamUnavailable, context.Canceled} {
		if Refused(err) {
			t.Errorf("Refused(%v) = true", err)
		}
		if d, ok := RetryAfter(err); ok || d != 0 {
			t.Errorf("RetryAfter(%v) = %v, %v, want 0, false", err, d, ok)
		}
	}
}

// TestRetryAfterBounds: seconds and dates as a registry may send them,
// read at a fixed now; what cannot be read leaves the caller's backoff.
func TestRetryAfterBounds(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	longest := time.Duration(math.MaxInt64)
	tests := []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"1", time.Second, true},
		{"17", 17 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"3600", time.Hour, true},
		{"9223372036", 9223372036 * time.Second, true},
		{"9223372037", longest, true},                 // one second past what a Duration holds
		{"99999999999999999999999999", longest, true}, // past int64 itself
		{"-1", 0, false},                              // no sign in delay-seconds
		{"+5", 0, false},
		{"1.5", 0, false},
		{" 5", 0, false}, // headers arrive trimmed
		{"soon", 0, false},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"Saturday, 01-Mar-25 12:01:00 GMT", time.Minute, true}, // RFC 850
		{"Sat Mar  1 12:00:05 2025", 5 * time.Second, true},     // asctime
		{"Sat, 01 Mar 2025 12:00:00 GMT", 0, true},
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},       // past: at once, never negative
		{"Fri, 31 Dec 9999 23:59:59 GMT", longest, true}, // far future: saturates
		{"Sat, 32 Mar 2025 12:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		e := &Error{Status: http.StatusTooManyRequests, RetryAfterHeader: tt.header}
		got, ok := e.retryAfterAt(now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Retry-After %q: %v, %v, want %v, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
	// Through a wrapping error, at the real now: seconds do not depend on it.
	if d, ok := RetryAfter(fmt.Errorf("x: %w", &Error{Status: 503, RetryAfterHeader: "2"})); d != 2*time.Second || !ok {
		t.Errorf("RetryAfter(wrapped 503, 2) = %v, %v, want 2s, true", d, ok)
	}
}
