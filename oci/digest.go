package oci

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"strings"
)

// Digest is a validated content digest such as "sha256:<64 hex>". Only the
// algorithms the OCI image spec registers are accepted, and the encoded part
// is lower-case hex of exactly the algorithm's length. That makes a Digest
// safe to use as a file name: it can never hold a path separator or "..".
type Digest string

// algorithms maps each accepted algorithm to its hex length and hash.
var algorithms = map[string]struct {
	hexLen int
	new    func() hash.Hash
}{
	"sha256": {64, sha256.New},
	"sha512": {128, sha512.New},
}

// ParseDigest validates s and returns it as a Digest.
func ParseDigest(s string) (Digest, error) {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("digest %.80q: missing algorithm", s)
	}
	a, known := algorithms[alg]
	if !known {
		return "", fmt.Errorf("digest %.80q: unsupported algorithm %.20q", s, alg)
	}
	if len(enc) != a.hexLen {
		return "", fmt.Errorf("digest %.80q: %s needs %d hex characters, got %d", s, alg, a.hexLen, len(enc))
	}
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("digest %.80q: not lower-case hex", s)
		}
	}
	return Digest(s), nil
}

// Algorithm is the part before the colon ("sha256").
func (d Digest) Algorithm() string {
	alg, _, _ := strings.Cut(string(d), ":")
	return alg
}

// Hex is the encoded part after the colon.
func (d Digest) Hex() string {
	_, enc, _ := strings.Cut(string(d), ":")
	return enc
}

// String returns the digest as text.
func (d Digest) String() string { return string(d) }

// Short is the digest cut to 12 hex characters, for log lines and errors.
func (d Digest) Short() string {
	h := d.Hex()
	if len(h) > 12 {
		h = h[:12]
	}
	return d.Algorithm() + ":" + h
}

// NewHash returns a fresh hash for the digest's algorithm. It panics on a
// Digest that did not come from ParseDigest or FromBytes.
func (d Digest) NewHash() hash.Hash {
	a, ok := algorithms[d.Algorithm()]
	if !ok {
		panic("oci: NewHash on unvalidated digest " + string(d))
	}
	return a.new()
}

// Matches reports whether h, having hashed some content, saw exactly the
// content d names.
func (d Digest) Matches(h hash.Hash) bool {
	return d.Hex() == fmt.Sprintf("%x", h.Sum(nil))
}

// FromBytes computes the sha256 digest of b.
func FromBytes(b []byte) Digest {
	return Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(b)))
}
