// Package metrics holds cacheyd's Prometheus collectors in one struct that is
// created once, registered on a registry the caller owns, and handed to the
// packages that count. There are no package-level collectors.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collectors. Label values come from small fixed sets: kind
// (manifest, blob, base, ...), tier (memory, disk), outcome, code (HTTP
// status), method, and registry (bounded by the operator's registry policy).
// Repository names and digests are never labels.
type Metrics struct {
	// Requests counts client requests by kind and status code.
	Requests *prometheus.CounterVec // kind, code
	// RequestDuration observes client request time until the handler
	// returns (the body of a streamed response may take longer).
	RequestDuration *prometheus.HistogramVec // kind
	// ClientClosed counts requests whose client closed its connection
	// before the response ended: normal for a client that reads a window
	// and hangs up.
	ClientClosed *prometheus.CounterVec // kind
	// BytesServed counts body bytes written to clients, by where they came
	// from (memory, disk, fill, passthrough).
	BytesServed *prometheus.CounterVec // source
	// Hits counts requests answered from a tier without upstream.
	Hits *prometheus.CounterVec // tier
	// Misses counts requests for digest-addressed content no tier held.
	Misses *prometheus.CounterVec // kind
	// FillsInFlight is the number of upstream fetches being written now.
	FillsInFlight prometheus.Gauge
	// FillsWaiting is the number of fills waiting for a fill slot
	// (--max-fills, --max-fills-per-registry).
	FillsWaiting prometheus.Gauge
	// FillsJoined counts requests that read a fill another request started.
	FillsJoined prometheus.Counter
	// FillRescues counts regions fetched at once, with a request beyond a
	// fill's --fill-parallel, for a reader that asked for bytes no request
	// was heading for (a lazy pull's window, say).
	FillRescues prometheus.Counter
	// FillsStopped counts fills stopped for making no progress (under
	// 64 KiB per --fill-stall window), by reason: unread (nobody read
	// them) or yielded (their slot went to a fill waiting for one).
	FillsStopped *prometheus.CounterVec // reason
	// Fills counts finished fills by outcome (ok, error).
	Fills *prometheus.CounterVec // outcome
	// PassThrough counts requests streamed from upstream with the client's
	// own credentials and not cached.
	PassThrough *prometheus.CounterVec // kind
	// TagLookups counts tag resolutions by outcome (fresh, revalidated,
	// stale, passthrough, notfound: the registry's 404, error).
	TagLookups *prometheus.CounterVec // outcome
	// Listings counts tag list and referrers requests by kind (tags,
	// referrers) and outcome (fresh, revalidated, stale, passthrough,
	// error).
	Listings *prometheus.CounterVec // kind, outcome
	// UpstreamRequests counts requests sent upstream.
	UpstreamRequests *prometheus.CounterVec // registry, method, kind, code
	// UpstreamBytes counts body bytes read from upstream.
	UpstreamBytes *prometheus.CounterVec // registry
	// RateLimitLimit, RateLimitRemaining and RateLimitWindow are what a
	// registry last said of cacheyd's pull budget (its ratelimit-*
	// headers) to this replica itself, never what a member told it of:
	// pulls per window, pulls left, and the window in seconds.
	RateLimitLimit     *prometheus.GaugeVec // registry
	RateLimitRemaining *prometheus.GaugeVec // registry
	RateLimitWindow    *prometheus.GaugeVec // registry
	// UpstreamPulls counts the manifest GETs a registry counts as pulls:
	// those it answered other than 401, 403 or 429 (HEADs are free).
	UpstreamPulls *prometheus.CounterVec // registry
	// RateLimitHeld counts manifest GETs answered 429 at once, without
	// asking the registry, while its budget was spent.
	RateLimitHeld *prometheus.CounterVec // registry
	// MemoryBytes and DiskBytes are what each tier holds now.
	MemoryBytes prometheus.Gauge
	DiskBytes   prometheus.Gauge
	// DiskEvictions counts objects evicted from disk to stay in budget.
	DiskEvictions prometheus.Counter
	// DiskVerified counts objects the disk tier hashed again before or
	// while first serving them after a start (after an unclean stop, or
	// for a file changed since its commit), by outcome: ok, or mismatch
	// (removed, to be fetched again).
	DiskVerified *prometheus.CounterVec // outcome
	// DiskIndexLoading is 1 while the disk tier builds its index after a
	// start (it serves meanwhile), 0 once it is whole; DiskIndexObjects is
	// how many objects the index holds (so far, while loading).
	DiskIndexLoading prometheus.Gauge
	DiskIndexObjects prometheus.Gauge
	// Uncached counts requests streamed from upstream without caching
	// because the disk could not take the object (reason: budget, disk).
	Uncached *prometheus.CounterVec // reason

	// The cluster (package cluster): all zero for a single replica.

	// ClusterMembers is how many members the last membership view holds,
	// this replica included.
	ClusterMembers prometheus.Gauge
	// ClusterSkipped is 1 for a member skipped after a failure, 0 for one
	// asked as usual: one series per current member, deleted when it
	// leaves. Member addresses are a bounded label: the replicas of one
	// Deployment, a handful, and only those of the current view.
	ClusterSkipped *prometheus.GaugeVec // member
	// ClusterRequests counts requests sent to peers and to the parent, by
	// outcome: hit (the owner had it), joined (its fill was in flight),
	// fetched (it fetched for us), refused (an error answer, passed on),
	// relayed (upstream's failure it relayed, passed on), fallback
	// (unreachable or a 5xx of its own: the next source was asked), broken
	// (its body was cut; the resume asked again), stalled (its body sent
	// nothing for the idle allowance: skipped), wrong (an answer no cacheyd
	// gives: skipped), unauthenticated (no valid proof of the cluster
	// secret: skipped) and loop (the request came back to it: skipped).
	ClusterRequests *prometheus.CounterVec // to (peer, parent), outcome
	// ClusterDirect counts a clustered replica's fetches from the registry
	// (package sources) by why: owner (this replica owns the key, or has no
	// member to ask), peer (a peer asked), fallback (a member before it
	// failed or was skipped) or parent-failed (the parent failed).
	ClusterDirect *prometheus.CounterVec // reason
	// ClusterBytes counts body bytes read from peers and from the parent.
	ClusterBytes *prometheus.CounterVec // from (peer, parent)
	// PeerServed counts requests this replica answered for peers.
	PeerServed *prometheus.CounterVec // kind, code

	// Where bytes come from (package sources).

	// SourceFailures counts failures of a source in its own right, after
	// which the next source of the request's list was asked, by source
	// (owner, parent, alternate, registry) and reason: unreachable (or
	// refused this cacheyd's token), error (a failure of its own, a 5xx not
	// relayed), wrong (an answer no such source gives: a redirect, a range
	// not asked for, another digest, bytes that are not the object),
	// stalled (its body sent nothing for its idle allowance),
	// unauthenticated (no valid proof of the cluster secret), loop (the
	// request came back to it) and missing (an alternate's 404). An answer
	// (a registry's 404, a failure another cacheyd relayed) is no failure
	// of its source.
	SourceFailures *prometheus.CounterVec // source, reason
	// AlternateTags counts tags an alternate resolved while their registry
	// failed and nothing was cached (--alternate-tags), by the registry
	// the tag is of.
	AlternateTags *prometheus.CounterVec // registry

	// What the cache reads whole into memory (package cache, readmem.go).

	// ReadMemoryBytes is the memory claimed now by manifests and listings
	// being read whole and by copies into the memory tier (--read-memory).
	ReadMemoryBytes prometheus.Gauge
	// ReadMemoryRefused counts reads that found no room in --read-memory
	// (in all, or in their registry's quarter), by kind: manifest (a tag
	// whose registry named no digest) and tags or referrers (a listing),
	// answered 503; memory, a copy into the memory tier, skipped.
	ReadMemoryRefused *prometheus.CounterVec // kind

	// Trust between cacheyds (the cluster secret, loops).

	// ClusterRefused counts requests this replica refused as another
	// cacheyd's: unauthenticated (the hop header or a probe without a
	// valid proof of the cluster secret) and loop (a request that came
	// back through a chain of parents).
	ClusterRefused *prometheus.CounterVec // reason

	// RequestsRefused counts connections answered without a request being
	// read, apart from cacheyd_requests_total: tls (a TLS handshake on
	// the plain-HTTP port, from a client trying HTTPS first).
	RequestsRefused *prometheus.CounterVec // reason

	// S3 is the object-storage tier's (s3.go).
	S3 S3
}

// durationBuckets are the histograms' buckets, in seconds.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New creates the collectors and registers them on reg. A nil reg registers
// nothing, which suits tests that do not look at metrics.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_requests_total", Help: "Client requests by API kind and HTTP status code.",
		}, []string{"kind", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cacheyd_request_duration_seconds",
			Help:    "Time to answer a client request (headers ready), by API kind.",
			Buckets: durationBuckets,
		}, []string{"kind"}),
		ClientClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_client_closed_total", Help: "Requests whose client closed its connection before the response ended, by API kind.",
		}, []string{"kind"}),
		BytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_served_bytes_total", Help: "Body bytes sent to clients, by source (memory, disk, fill, passthrough, upstream).",
		}, []string{"source"}),
		Hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cache_hits_total", Help: "Requests answered from a cache tier, by tier.",
		}, []string{"tier"}),
		Misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cache_misses_total", Help: "Requests for content no cache tier held, by kind.",
		}, []string{"kind"}),
		FillsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_fills_in_flight", Help: "Upstream fetches being written into the cache now.",
		}),
		FillsWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_fills_waiting", Help: "Fills waiting for a slot: at the limit of fills at once, in all or for their registry.",
		}),
		FillsJoined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cacheyd_fill_joins_total", Help: "Requests that streamed a fill started by another request.",
		}),
		FillRescues: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cacheyd_fill_rescues_total", Help: "Regions fetched at once for a reader no request of its fill was heading for, beyond --fill-parallel.",
		}),
		FillsStopped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_fills_stopped_total", Help: "Fills stopped for making no progress, by reason (unread: nobody read them; yielded: their slot went to a waiting fill).",
		}, []string{"reason"}),
		Fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_fills_total", Help: "Finished fills by outcome (ok, error).",
		}, []string{"outcome"}),
		PassThrough: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_passthrough_total", Help: "Requests streamed with the client's own credentials and not cached, by kind.",
		}, []string{"kind"}),
		TagLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_tag_lookups_total", Help: "Tag resolutions by outcome (fresh, revalidated, stale, passthrough, notfound, error).",
		}, []string{"outcome"}),
		Listings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_listings_total", Help: "Tag list and referrers requests by kind (tags, referrers) and outcome (fresh, revalidated, stale, passthrough, error).",
		}, []string{"kind", "outcome"}),
		UpstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_upstream_requests_total", Help: "Requests sent to upstream registries.",
		}, []string{"registry", "method", "kind", "code"}),
		UpstreamBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_upstream_bytes_total", Help: "Body bytes read from upstream registries.",
		}, []string{"registry"}),
		RateLimitLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cacheyd_upstream_ratelimit_limit", Help: "Pulls per window a registry last announced to this replica itself (its ratelimit-limit).",
		}, []string{"registry"}),
		RateLimitRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cacheyd_upstream_ratelimit_remaining", Help: "Pulls left in the window a registry last announced to this replica itself (its ratelimit-remaining).",
		}, []string{"registry"}),
		RateLimitWindow: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cacheyd_upstream_ratelimit_window_seconds", Help: "The window of a registry's pull budget, as it last announced it to this replica itself.",
		}, []string{"registry"}),
		UpstreamPulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_upstream_pulls_total", Help: "Manifest GETs a registry counts as pulls (answered other than 401, 403, 429).",
		}, []string{"registry"}),
		RateLimitHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_upstream_ratelimit_held_total", Help: "Manifest GETs answered 429 without asking the registry, while its pull budget was spent.",
		}, []string{"registry"}),
		MemoryBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_memory_tier_bytes", Help: "Bytes held by the memory tier.",
		}),
		DiskBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_disk_tier_bytes", Help: "Bytes held by the disk tier.",
		}),
		DiskEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cacheyd_disk_evictions_total", Help: "Objects evicted from the disk tier to stay within its budget.",
		}),
		DiskVerified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_disk_verified_total", Help: "Objects the disk tier hashed again before serving them after a start (an unclean stop, or a file changed since its commit), by outcome (ok, mismatch).",
		}, []string{"outcome"}),
		DiskIndexLoading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_disk_index_loading", Help: "1 while the disk tier builds its index after a start (serving meanwhile), 0 once it is whole.",
		}),
		DiskIndexObjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_disk_index_objects", Help: "Objects the disk tier's index holds (so far, while it loads).",
		}),
		Uncached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_uncached_total", Help: "Requests streamed from upstream without caching because the disk could not take the object, by reason (budget, disk).",
		}, []string{"reason"}),
		ClusterMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_cluster_members", Help: "Members of the cluster in the current view, this replica included (0: not clustered).",
		}),
		ClusterSkipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cacheyd_cluster_member_skipped", Help: "1 while a member is skipped after a failure, 0 while it is asked; one series per current member.",
		}, []string{"member"}),
		ClusterRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cluster_requests_total", Help: "Requests sent to peers and to the parent, by outcome (hit, joined, fetched, refused, relayed, fallback, broken, stalled, wrong, unauthenticated, loop).",
		}, []string{"to", "outcome"}),
		ClusterDirect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cluster_direct_total", Help: "A clustered replica's fetches from the registry, by why (owner, peer, fallback, parent-failed).",
		}, []string{"reason"}),
		ClusterBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cluster_bytes_total", Help: "Body bytes read from peers and from the parent.",
		}, []string{"from"}),
		PeerServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cluster_served_total", Help: "Requests answered for other replicas, by API kind and HTTP status code.",
		}, []string{"kind", "code"}),
		SourceFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_source_failures_total", Help: "Failures of a source in its own right, after which the next source was asked, by source (owner, store, parent, alternate, registry) and reason (unreachable, error, wrong, stalled, unauthenticated, loop, missing, limited, reserve).",
		}, []string{"source", "reason"}),
		AlternateTags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_alternate_tags_total", Help: "Tags an alternate resolved while their registry failed and nothing was cached (--alternate-tags), by registry.",
		}, []string{"registry"}),

		ReadMemoryBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cacheyd_read_memory_bytes", Help: "Bytes claimed now of --read-memory by manifests and listings read whole and by copies into the memory tier.",
		}),
		ReadMemoryRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_read_memory_refused_total", Help: "Reads that found no room in --read-memory, by kind: manifest, tags, referrers (answered 503), memory (a copy into the memory tier, skipped).",
		}, []string{"kind"}),
		ClusterRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_cluster_refused_total", Help: "Requests refused as another cacheyd's, by reason (unauthenticated, loop).",
		}, []string{"reason"}),
		RequestsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cacheyd_requests_refused_total", Help: "Connections answered 400 without a request read, by reason (tls: a TLS handshake on the plain-HTTP port).",
		}, []string{"reason"}),
		S3: newS3(),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.RequestDuration, m.ClientClosed, m.BytesServed, m.Hits, m.Misses,
			m.FillsInFlight, m.FillsWaiting, m.FillsJoined, m.FillRescues, m.FillsStopped, m.Fills, m.PassThrough, m.TagLookups, m.Listings,
			m.UpstreamRequests, m.UpstreamBytes, m.RateLimitLimit, m.RateLimitRemaining, m.RateLimitWindow, m.UpstreamPulls, m.RateLimitHeld,
			m.MemoryBytes, m.DiskBytes, m.DiskEvictions, m.DiskVerified, m.DiskIndexLoading, m.DiskIndexObjects, m.Uncached,
			m.ClusterMembers, m.ClusterSkipped, m.ClusterRequests, m.ClusterDirect, m.ClusterBytes, m.PeerServed, m.SourceFailures, m.AlternateTags,
			m.ReadMemoryBytes, m.ReadMemoryRefused,
			m.ClusterRefused, m.RequestsRefused)
		reg.MustRegister(m.S3.collectors()...)
	}
	return m
}
