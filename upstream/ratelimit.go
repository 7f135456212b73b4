package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A registry states its pull budget on its manifest answers, HEAD and GET,
// success and 429 alike. Docker Hub sends
//
//	ratelimit-limit: 100;w=21600
//	ratelimit-remaining: 76;w=21600
//	docker-ratelimit-source: 192.0.2.1
//
// and the IETF draft's older form names the same two headers (header names
// are case-insensitive) with a bare count, the window in RateLimit-Policy
// ("100;w=21600") and the seconds until the window starts again in
// RateLimit-Reset. A list ("100, 100;w=21600") is read by its first item.
// Anything else is not a budget cacheyd can read: it is ignored, never an
// error, since the content of the answer is still good.

// rateLimit is what one answer says of its registry's budget.
type rateLimit struct {
	limit, remaining int64
	window           time.Duration // 0: not stated
	reset            time.Duration // until the window starts again; 0: not stated
	source           string        // docker-ratelimit-source, whose budget it is ("" when not stated)
}

// Bounds of a budget worth believing: counts beyond maxRateLimitCount and
// windows beyond maxRateLimitWindow are garbage, not budgets.
const (
	maxRateLimitCount  = 1 << 40
	maxRateLimitWindow = 366 * 24 * time.Hour
	// maxRateLimitSource bounds the source kept and shown: an address.
	maxRateLimitSource = 64
)

// maxWindowSeconds is maxRateLimitWindow in seconds, compared before a
// count of seconds becomes a Duration, which a huge one would overflow.
const maxWindowSeconds = int64(maxRateLimitWindow / time.Second)

var errNotBudget = errors.New("not a count")

// parseRateLimit reads the budget stated in h. It reports false with an
// empty why when h states none, and false with why saying what is wrong
// when what h states cannot be read.
func parseRateLimit(h http.Header) (rl rateLimit, ok bool, why string) {
	limitV, remV := h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining")
	if limitV == "" && remV == "" {
		return rateLimit{}, false, ""
	}
	limit, wl, err := parseRateLimitItem(limitV)
	if err != nil {
		return rateLimit{}, false, fmt.Sprintf("RateLimit-Limit %q: %v", limitV, err)
	}
	remaining, wr, err := parseRateLimitItem(remV)
	if err != nil {
		return rateLimit{}, false, fmt.Sprintf("RateLimit-Remaining %q: %v", remV, err)
	}
	if remaining > limit {
		return rateLimit{}, false, fmt.Sprintf("RateLimit-Remaining %d over RateLimit-Limit %d", remaining, limit)
	}
	rl = rateLimit{limit: limit, remaining: remaining, window: wl}
	if rl.window == 0 {
		rl.window = wr
	}
	if p := h.Get("RateLimit-Policy"); p != "" && rl.window == 0 {
		if _, wp, err := parseRateLimitItem(p); err == nil {
			rl.window = wp
		}
	}
	if r := h.Get("RateLimit-Reset"); r != "" {
		secs, err := parseCount(r)
		if err != nil || secs > maxWindowSeconds {
			return rateLimit{}, false, fmt.Sprintf("RateLimit-Reset %q: not a number of seconds", r)
		}
		rl.reset = time.Duration(secs) * time.Second
	}
	if s := h.Get("Docker-RateLimit-Source"); len(s) <= maxRateLimitSource && validHeaderValue(s) {
		rl.source = s
	}
	return rl, true, ""
}

// parseRateLimitItem reads the first item of a RateLimit header: a count
// and its parameters, of which only w (the window, in seconds) is read.
func parseRateLimitItem(v string) (n int64, window time.Duration, err error) {
	if v == "" {
		return 0, 0, errors.New("missing")
	}
	item, _, _ := strings.Cut(v, ",")
	count, params, _ := strings.Cut(item, ";")
	if n, err = parseCount(count); err != nil {
		return 0, 0, err
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if !strings.EqualFold(k, "w") {
			continue
		}
		secs, err := parseCount(val)
		if err != nil || secs == 0 || secs > maxWindowSeconds {
			return 0, 0, fmt.Errorf("window %q: not a number of seconds", val)
		}
		window = time.Duration(secs) * time.Second
	}
	return n, window, nil
}

// parseCount reads a non-negative decimal count up to maxRateLimitCount.
func parseCount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errNotBudget
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxRateLimitCount {
		return 0, errNotBudget
	}
	return n, nil
}
