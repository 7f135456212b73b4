package upstream

import (
	"net/http"
	"testing"
	"time"
)

// TestParseRateLimit: Docker Hub's headers and the IETF draft's older form
// are read; anything malformed, negative or huge is ignored with a reason,
// and no headers at all is no budget and no reason.
func TestParseRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    rateLimit
		ok      bool
		bad     bool // a reason is given
	}{
		{"none", nil, rateLimit{}, false, false},
		{"docker hub", map[string]string{"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600", "docker-ratelimit-source": "192.0.2.1"},
			rateLimit{limit: 100, remaining: 76, window: 6 * time.Hour, source: "192.0.2.1"}, true, false},
		{"spent", map[string]string{"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"},
			rateLimit{limit: 100, window: 6 * time.Hour}, true, false},
		{"draft with policy and reset", map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "42", "RateLimit-Policy": "10;w=60"},
			rateLimit{limit: 10, remaining: 3, window: time.Minute, reset: 42 * time.Second}, true, false},
		{"list, first item", map[string]string{"RateLimit-Limit": "10, 10;w=1, 50;w=60", "RateLimit-Remaining": " 9 "},
			rateLimit{limit: 10, remaining: 9}, true, false},
		{"window on remaining only", map[string]string{"RateLimit-Limit": "5", "RateLimit-Remaining": "5;w=30"},
			rateLimit{limit: 5, remaining: 5, window: 30 * time.Second}, true, false},
		{"unknown parameters", map[string]string{"RateLimit-Limit": "5;burst=2;w=30", "RateLimit-Remaining": "1;x"},
			rateLimit{limit: 5, remaining: 1, window: 30 * time.Second}, true, false},
		{"source too long", map[string]string{"RateLimit-Limit": "5", "RateLimit-Remaining": "1", "Docker-RateLimit-Source": string(make([]byte, 100))},
			rateLimit{limit: 5, remaining: 1}, true, false},
		{"limit only", map[string]string{"RateLimit-Limit": "100"}, rateLimit{}, false, true},
		{"remaining only", map[string]string{"RateLimit-Remaining": "100"}, rateLimit{}, false, true},
		{"negative", map[string]string{"RateLimit-Limit": "100", "RateLimit-Remaining": "-1"}, rateLimit{}, false, true},
		{"plus sign", map[string]string{"RateLimit-Limit": "+100", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"huge", map[string]string{"RateLimit-Limit": "99999999999999999999999", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"over the bound", map[string]string{"RateLimit-Limit": "2000000000000", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"fraction", map[string]string{"RateLimit-Limit": "1.5", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"garbage", map[string]string{"RateLimit-Limit": "lots", "RateLimit-Remaining": "some"}, rateLimit{}, false, true},
		{"remaining over limit", map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "11"}, rateLimit{}, false, true},
		{"zero window", map[string]string{"RateLimit-Limit": "10;w=0", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"huge window", map[string]string{"RateLimit-Limit": "10;w=99999999999999", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"bad window", map[string]string{"RateLimit-Limit": "10;w=soon", "RateLimit-Remaining": "1"}, rateLimit{}, false, true},
		{"bad reset", map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "1", "RateLimit-Reset": "-5"}, rateLimit{}, false, true},
		{"huge reset", map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "1", "RateLimit-Reset": "9999999999999"}, rateLimit{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			got, ok, why := parseRateLimit(h)
			if got != tc.want || ok != tc.ok || (why != "") != tc.bad {
				t.Errorf("parseRateLimit = %+v, %v, %q; want %+v, %v, reason given %v", got, ok, why, tc.want, tc.ok, tc.bad)
			}
		})
	}
}

// FuzzParseRateLimit: whatever a registry sends, a budget read is within
// the bounds, and an unread one says why.
func FuzzParseRateLimit(f *testing.F) {
	f.Add("100;w=21600", "76;w=21600", "", "")
	f.Add("10", "3", "42", "10;w=60")
	f.Add("-1", "99999999999999999999", "x", ";;;w=")
	f.Add("1, 2;w=3", "0;w=1;w=2", "0", "")
	f.Fuzz(func(t *testing.T, limit, remaining, reset, policy string) {
		h := http.Header{}
		for k, v := range map[string]string{"RateLimit-Limit": limit, "RateLimit-Remaining": remaining, "RateLimit-Reset": reset, "RateLimit-Policy": policy} {
			if v != "" {
				h.Set(k, v)
			}
		}
		rl, ok, why := parseRateLimit(h)
		if !ok {
			if rl != (rateLimit{}) {
				t.Errorf("unread budget %+v is not zero", rl)
			}
			if why == "" && (limit != "" || remaining != "") {
				t.Errorf("budget headers %q, %q unread without a reason", limit, remaining)
			}
			return
		}
		if why != "" {
			t.Errorf("read budget with a reason %q", why)
		}
		if rl.limit < 0 || rl.limit > maxRateLimitCount || rl.remaining < 0 || rl.remaining > rl.limit {
			t.Errorf("counts out of bounds: %+v", rl)
		}
		if rl.window < 0 || rl.window > maxRateLimitWindow || rl.reset < 0 || rl.reset > maxRateLimitWindow {
			t.Errorf("durations out of bounds: %+v", rl)
		}
	})
}
