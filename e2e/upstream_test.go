//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/cacheyd/cacheyd/internal/registrytest"
)

// agent is who sent one request upstream.
type agent struct {
	method, path, userAgent string
}

// agents records the User-Agent of every request the fake registry and its
// CDN receive (registrytest.Request does not carry it).
type agents struct {
	mu   sync.Mutex // guards seen
	seen []agent    // in arrival order
}

// watchAgents installs a hook on up that records User-Agents and lets every
// request through unchanged.
func watchAgents(up *registrytest.Registry) *agents {
	a := &agents{}
	up.SetHook(func(_ http.ResponseWriter, req *http.Request) bool {
		a.mu.Lock()
		a.seen = append(a.seen, agent{req.Method, req.URL.Path, req.UserAgent()})
		a.mu.Unlock()
		return false
	})
	return a
}

// notFrom returns the recorded requests whose User-Agent does not start
// with prefix, and how many were recorded in all.
func (a *agents) notFrom(prefix string) (others []agent, total int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.seen {
		if !strings.HasPrefix(s.userAgent, prefix) {
			others = append(others, s)
		}
	}
	return others, len(a.seen)
}

func (a *agents) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = nil
}

// describe formats recorded upstream requests for failure messages.
func describe(reqs []registrytest.Request) string {
	var b strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&b, "\n  %s %s %s %s", r.Host, r.Method, r.Path, r.Query)
	}
	return b.String()
}
