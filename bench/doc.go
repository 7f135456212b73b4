// Package bench is cacheyd's burst-scaling benchmark harness, run as
// cacheyd-bench. It starts a fake Docker Hub in-process (a real registry
// with Docker Hub's token challenge, blob redirects to a second host, pull
// accounting with a pull limit, and a per-connection bandwidth cap and
// per-request latency), seeds it with a set of images shaped like what
// every new Kubernetes node pulls, and has bursts of simulated nodes pull
// the set the way containerd does: directly from the upstream, through a
// cold cacheyd and through a warm one. It reports what upstream saw (pulls
// counted, bytes, 429s) and what the nodes saw (time per node, bytes,
// first-byte lag) as a table, JSON and a chart.
//
// Nothing imports bench; its API (Config, Run, Report) is for
// cmd/cacheyd-bench, which passes cacheyd's real wiring in as Config.Start.
package bench
