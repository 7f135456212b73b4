package upstream

import "sync"

// Metric labels name registries, and registries are named by clients
// (?ns=), so the label's values must be bounded or any client could grow
// cacheyd's memory, and Prometheus's, one series at a time. Registries the
// operator configured (RegistryURLs, Registries) always have their own
// label. Any other registry counts as "other" until it has served content
// once; then it gets its own label, up to maxRegistryLabels of them. A
// name that never serves content, however many a client invents, never
// takes a label.
const (
	maxRegistryLabels  = 64
	otherRegistryLabel = "other"
)

// registryLabels chooses the registry label of each request.
type registryLabels struct {
	fixed map[string]bool // configured registries, never changed after New

	mu   sync.Mutex      // guards seen
	seen map[string]bool // unconfigured registries that served content
}

func newRegistryLabels(configured []string) *registryLabels {
	l := &registryLabels{fixed: make(map[string]bool, len(configured)), seen: make(map[string]bool)}
	for _, r := range configured {
		l.fixed[r] = true
	}
	return l
}

// of returns the label for registry, a canonical name.
func (l *registryLabels) of(registry string) string {
	if l.fixed[registry] {
		return registry
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[registry] {
		return registry
	}
	return otherRegistryLabel
}

// served records that registry served content, which earns it a label of
// its own while there is room.
func (l *registryLabels) served(registry string) {
	if l.fixed[registry] {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) < maxRegistryLabels {
		l.seen[registry] = true
	}
}
