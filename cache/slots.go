package cache

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/cacheyd/cacheyd/oci"
)

// fillSlots bounds the fills that fetch at once, in all and per registry.
// Each running fill holds an upstream connection and a copy buffer, and a
// fill outlives the clients that asked for it, so without a bound many
// slow upstreams (or one hostile registry) could take all of cacheyd's
// memory and connections. A fill waits for its slots before its first
// upstream request, for at most Config.AnswerTimeout; its readers wait with
// it, each for at most the same.
type fillSlots struct {
	all    chan struct{} // a token per running fill
	perMax int

	mu  sync.Mutex                // guards per
	per map[string]*registrySlots // registries with fills running or waiting
}

type registrySlots struct {
	tokens chan struct{} // a token per running fill of the registry
	users  int           // fills running or waiting; the entry goes at zero
}

func newFillSlots(all, perRegistry int) *fillSlots {
	return &fillSlots{all: make(chan struct{}, all), perMax: perRegistry, per: map[string]*registrySlots{}}
}

// errTooManyFills answers a request whose fill found no slot in time.
func errTooManyFills(registry string) error {
	return &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable, RetryAfter: "1",
		Message: fmt.Sprintf("too many fills in flight (registry %s); try again", registry)}
}

// acquire waits for a slot of registry and one of all, in that order, so
// that a registry at its limit holds none of the others' slots. It returns
// the release, or errTooManyFills when ctx ends first.
func (s *fillSlots) acquire(ctx context.Context, registry string) (func(), error) {
	s.mu.Lock()
	r := s.per[registry]
	if r == nil {
		r = &registrySlots{tokens: make(chan struct{}, s.perMax)}
		s.per[registry] = r
	}
	r.users++
	s.mu.Unlock()
	leave := func() {
		s.mu.Lock()
		if r.users--; r.users == 0 {
			delete(s.per, registry)
		}
		s.mu.Unlock()
	}
	select {
	case r.tokens <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, errTooManyFills(registry)
	}
	select {
	case s.all <- struct{}{}:
	case <-ctx.Done():
		<-r.tokens
		leave()
		return nil, errTooManyFills(registry)
	}
	return func() {
		<-s.all
		<-r.tokens
		leave()
	}, nil
}
