// Package server is cacheyd's HTTP front end: it parses each request of the
// OCI distribution API once into plain values (registry, repository,
// reference, Range, Accept, Authorization), asks the cache for the content
// and writes it with the headers registry clients expect, Range and HEAD
// included. It answers errors as OCI error JSON (or passes upstream's own
// answer through, challenge and all), refuses pushes, writes one access
// line per request, and serves /metrics, /healthz and /readyz.
//
// Routing: a request's registry is its ?ns= parameter (containerd's mirror
// protocol); else a host-like first path component (/v2/ghcr.io/org/app/...,
// as CRI-O and podman mirrors send); else Config.DefaultRegistry (dockerd's
// registry-mirrors). One-component Docker Hub names get library/.
//
// The server is the only package that knows the HTTP library (fasthttp);
// below it, everything speaks oci.Request, context.Context and io.Reader.
// Bodies are streamed: a disk hit is sent with sendfile, a fill in flight as
// it is written, and a body that fails part-way aborts the connection so
// that a client never mistakes a short response for a whole one.
package server
