package origintest

import (
	"encoding/json"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

// Suite describes an origin for Conformance.
type Suite struct {
	// New returns an origin that holds what h says, under h.Registry's
	// name and h.Repository, and behaves as h.Behaviour says. Required.
	New func(t *testing.T, h Holding) Fetcher
	// DigestOnly says the origin holds content by digest alone, as an
	// object store does: the checks of tags and of a registry's refusal
	// are skipped (New is never asked to refuse).
	DigestOnly bool
}

// skipTag skips t, a check of ref, when s holds no tags and ref is one.
func skipTag(t *testing.T, s Suite, ref oci.Reference) {
	t.Helper()
	if s.DigestOnly && !ref.IsDigest() {
		t.Skip("the origin holds content by digest only")
	}
}

// Holding is what the suite asks an origin under test to hold, and how it
// is to behave.
type Holding struct {
	// Registry is the name every request carries (oci.Request.Registry):
	// the origin maps it to its registry.
	Registry string
	// Repository holds everything.
	Repository string
	// Blobs are held by their digests: a small one (a config) and a larger
	// one (a layer), each of at least 64 KiB.
	Blobs [][]byte
	// Manifest, an OCI image manifest of the blobs (MediaType), is held by
	// its digest and under Tag.
	Manifest  []byte
	MediaType string
	Tag       string
	// Absent is a blob, and AbsentTag a tag, that the origin does not
	// hold: asked for, they are 404.
	Absent    []byte
	AbsentTag string
	// Behaviour is how the origin treats its requests.
	Behaviour Behaviour
	// After is where a body is cut or hangs (Cuts, Hangs), in bytes from
	// its start: less than the 64 KiB a resumed attempt must have read to
	// be given back (package retry), so that a cacheyd between the
	// registry and the origin, making no retries, gives up at the cut.
	After int64
}

// Behaviour is how an origin under test treats its requests.
type Behaviour int

const (
	// Honest answers everything it holds.
	Honest Behaviour = iota
	// Refuses refuses every request without a client's Authorization with
	// 401 and a Bearer challenge, as a registry refuses cacheyd for a
	// private repository. It need hold nothing: a registry refuses before
	// it looks.
	Refuses
	// Cuts breaks the GET bodies of blobs after Holding.After bytes, as a
	// connection that is cut.
	Cuts
	// Hangs sends Holding.After bytes of the GET bodies of blobs and then
	// nothing, as an upstream that stalls.
	Hangs
)

func (b Behaviour) String() string {
	switch b {
	case Honest:
		return "honest"
	case Refuses:
		return "refuses"
	case Cuts:
		return "cuts"
	case Hangs:
		return "hangs"
	}
	return "unknown"
}

// Conformance is the suite every origin passes: the fake, the upstream
// client over a registry and a replica's cluster origin asking the key's
// owner. Each check asks s.New for an origin of its own.
func Conformance(t *testing.T, s Suite) {
	checks := []struct {
		name string
		fn   func(t *testing.T, s Suite)
	}{
		{"Windows", checkWindows},
		{"PastTheEnd", checkPastTheEnd},
		{"Head", checkHead},
		{"Manifests", checkManifests},
		{"Unknown", checkUnknown},
		{"Refusal", checkRefusal},
		{"CutBody", checkCutBody},
		{"Timeout", checkTimeout},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, s) })
	}
}

// ConformanceRegistry and ConformanceRepository are where the suite's
// content is.
const (
	ConformanceRegistry   = "registry.test"
	ConformanceRepository = "conformance/app"
)

// ociManifest is the media type of the suite's manifest.
const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// holding is fresh content for one check.
func holding(t *testing.T, b Behaviour) Holding {
	t.Helper()
	h := Holding{Registry: ConformanceRegistry, Repository: ConformanceRepository, Tag: "v1",
		MediaType: ociManifest, Behaviour: b, After: 10000,
		Blobs:  [][]byte{RandomBytes(t, 64<<10+5), RandomBytes(t, 300<<10+7)},
		Absent: RandomBytes(t, 1000), AbsentTag: "absent"}
	type descriptor struct {
		MediaType string     `json:"mediaType"`
		Digest    oci.Digest `json:"digest"`
		Size      int        `json:"size"`
	}
	desc := func(mediaType string, b []byte) descriptor { return descriptor{mediaType, oci.FromBytes(b), len(b)} }
	m, err := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}{2, h.MediaType, desc("application/vnd.oci.image.config.v1+json", h.Blobs[0]),
		[]descriptor{desc("application/vnd.oci.image.layer.v1.tar", h.Blobs[1])}})
	if err != nil {
		t.Fatal(err)
	}
	h.Manifest = m
	return h
}

// newOrigin asks s for an origin holding fresh content, behaving as b says.
func newOrigin(t *testing.T, s Suite, b Behaviour) (Fetcher, Holding) {
	t.Helper()
	h := holding(t, b)
	return s.New(t, h), h
}

func blobReq(h Holding, method string, data []byte) *oci.Request {
	return &oci.Request{Method: method, Kind: oci.KindBlob, Registry: h.Registry, Repository: h.Repository,
		Reference: oci.Reference{Digest: oci.FromBytes(data)}}
}

func manifestReq(h Holding, method string, ref oci.Reference) *oci.Request {
	return &oci.Request{Method: method, Kind: oci.KindManifest, Registry: h.Registry, Repository: h.Repository, Reference: ref}
}

// Fake is the fake made to conform: it holds h and behaves as h says,
// through the faults of this package (Private, Cut, Hang).
func Fake(t *testing.T, h Holding) Fetcher {
	o := New()
	for _, b := range h.Blobs {
		o.Add(b, "")
	}
	o.Tag(h.Tag, o.Add(h.Manifest, h.MediaType))
	switch h.Behaviour {
	case Refuses:
		return Private(o, "Bearer the-client")
	case Cuts:
		return Cut(o, h.After)
	case Hangs:
		return Hang(o, h.After)
	}
	return o
}

// isStatus reports whether err is an *oci.Error with status.
func isStatus(err error, status int) bool {
	e, ok := oci.AsError(err)
	return ok && e.Status == status
}
