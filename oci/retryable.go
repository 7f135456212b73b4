package oci

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// What an error answer says about the next attempt, decided here once: the
// retry ladder, the tag lookups that serve a stale answer, the credential
// fallback and the upstream client all ask these, rather than reading
// statuses of their own.

// Retryable reports whether another attempt may get another answer: the
// one that answered failed (5xx) or asked to be given time (429). Any
// other answer (a 404, a refusal, a manifest too large) would come again.
func (e *Error) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// Refused reports whether the registry refused the identity it was asked
// with (401 or 403): with other credentials, or with none, it may answer.
func (e *Error) Refused() bool { return RefusedStatus(e.Status) }

// RefusedStatus reports whether an HTTP status refuses the identity a
// request was sent with, as Error.Refused does, for a response not yet
// made an Error.
func RefusedStatus(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// RetryAfter is how long the answer asks to be given before the next
// attempt (its Retry-After, in seconds or as an HTTP date), and whether it
// asks in a form that can be read: without one, the caller's own backoff
// applies. A date in the past is zero; seconds beyond what a
// time.Duration holds are the longest one, never a wrapped short wait.
func (e *Error) RetryAfter() (time.Duration, bool) {
	return e.retryAfterAt(time.Now())
}

// retryAfterAt is RetryAfter at the time now, which an HTTP date is read
// against.
func (e *Error) retryAfterAt(now time.Time) (time.Duration, bool) {
	h := e.RetryAfterHeader
	if h == "" {
		return 0, false
	}
	if strings.Trim(h, "0123456789") == "" {
		// delay-seconds (RFC 9110 10.2.3): digits only, no sign. Digits
		// fail to parse only beyond int64.
		secs, err := strconv.ParseInt(h, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) {
			return math.MaxInt64, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// Retryable reports whether another attempt at what failed with err may
// succeed: the origin could not be reached or did not answer in time
// (ErrUpstreamUnavailable), its body broke or stalled, or its answer is
// Error.Retryable. Not retried: an answer that would come again, the
// caller's own cancellation, and a failure another cacheyd relayed
// (ErrRelayed), which made its attempts already: one ladder of retries per
// client request is enough, however many cacheyds it crosses. nil is not
// retried.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrRelayed) {
		return false
	}
	if e, ok := AsError(err); ok {
		return e.Retryable()
	}
	return !errors.Is(err, context.Canceled) || errors.Is(err, ErrStalled)
}

// Refused reports whether err holds an Error that refused the identity the
// request was sent with (Error.Refused).
func Refused(err error) bool {
	e, ok := AsError(err)
	return ok && e.Refused()
}

// RetryAfter is the wait err's Error asks for (Error.RetryAfter), if err
// holds one that asks.
func RetryAfter(err error) (time.Duration, bool) {
	if e, ok := AsError(err); ok {
		return e.RetryAfter()
	}
	return 0, false
}
