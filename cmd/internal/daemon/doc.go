// Package daemon holds cacheyd's flags (kong struct tags; each has a
// CACHEYD_* variable) and turns them into the one wiring's app.Config,
// with the process logger and the version cacheyd reports. Two commands
// embed them: cacheyd itself, and cacheyd-bench, which starts cacheyd
// in-process for each burst exactly as "cacheyd" would start with the
// same flags, so the benchmark measures what ships without shipping the
// benchmark.
package daemon
