package registrytest

import (
	"net/http"
	"strconv"
	"sync"
)

// pullWindow is the window Docker Hub states in its RateLimit headers: six
// hours, in seconds. The fake registry never starts a new window by itself;
// Reset does.
const pullWindow = ";w=21600"

// pullLimitMessage is the message of Docker Hub's 429 for pulls beyond the
// limit, as clients see it in their errors.
const pullLimitMessage = "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"

// pullCounter does Docker Hub's pull accounting: every manifest GET that
// passes authorization is one pull; HEAD is free. Beyond the limit, GETs are
// answered 429 and not counted.
type pullCounter struct {
	limit   int        // 0: unlimited
	mu      sync.Mutex // guards counted and refused
	counted int
	refused int
}

// account counts a manifest request, sets the RateLimit headers Docker Hub
// sends, and reports whether the request may go on; when not, it has
// written the 429.
func (p *pullCounter) account(w http.ResponseWriter, req *http.Request) bool {
	get := req.Method == http.MethodGet
	p.mu.Lock()
	over := get && p.limit > 0 && p.counted >= p.limit
	switch {
	case over:
		p.refused++
	case get:
		p.counted++
	}
	remaining := p.limit - p.counted
	p.mu.Unlock()
	if p.limit > 0 {
		w.Header().Set("RateLimit-Limit", strconv.Itoa(p.limit)+pullWindow)
		w.Header().Set("RateLimit-Remaining", strconv.Itoa(max(remaining, 0))+pullWindow)
	}
	if over {
		refuse(w, http.StatusTooManyRequests, "", "TOOMANYREQUESTS", pullLimitMessage)
		return false
	}
	return true
}

func (p *pullCounter) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counted, p.refused = 0, 0
}

// Pulls returns Docker Hub's pull accounting since NewServer or the last
// Reset: counted is the manifest GETs that passed authorization (HEAD is
// not a pull), refused the GETs answered 429 because Options.PullLimit was
// reached.
func (r *Registry) Pulls() (counted, refused int) {
	r.pulls.mu.Lock()
	defer r.pulls.mu.Unlock()
	return r.pulls.counted, r.pulls.refused
}
