// Package peerauth proves that a request, or the answer to one, comes from
// a cacheyd that holds the cluster secret (--cluster-secret), and seals what
// only such a cacheyd may read: a client's Authorization.
//
// From the secret it derives, with HKDF-SHA256, three keys of one purpose
// each: one proves requests, one proves answers (so that neither passes for
// the other), one seals (AES-256-GCM).
//
//   - A request carries ProofHeader: a timestamp, a random 96-bit nonce
//     fresh for the request, and an HMAC-SHA256 over both and what the
//     request asks (method, path and query as sent, Range, Accept, the
//     ViaHeader chain and the sealed Authorization). The receiver accepts it
//     within MaxSkew of its own clock.
//   - The answer carries AnswerHeader: an HMAC over the request's nonce and
//     the headers the asker acts on (status, digest, type, length, range,
//     source, the relayed marker, challenge and Retry-After). An answer
//     proven so was made for this very request by a holder of the secret.
//     Bodies are not covered: content is verified by its digest.
//   - An answer to a manifest request may carry BudgetHeader, the pull
//     budget the member last read from the registry, with an HMAC of its
//     own over the request's nonce (budget.go).
//   - A client's Authorization travels in AuthorizationHeader only, sealed
//     with the request's nonce as the GCM nonce and its timestamp and path
//     as additional data: an eavesdropper on plain HTTP learns nothing, and
//     it opens for no other request.
//
// A request seen once may be sent again within MaxSkew by whoever saw it:
// that gains the same answer, which the eavesdropper saw already, and no
// more (its sealed Authorization opens only for that same path).
//
// It is a leaf (the standard library and oci's header names), so that the
// server (which checks requests and proves its answers) and the cluster
// (which proves its requests and checks the answers) share one definition
// of what is signed.
package peerauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cacheyd/cacheyd/oci"
)

// Headers and paths cacheyds speak to each other with the secret.
const (
	// ProofHeader proves a request: "1.<unix seconds>.<nonce>.<mac>".
	ProofHeader = "X-Cacheyd-Proof"
	// AnswerHeader proves an answer to a proven request.
	AnswerHeader = "X-Cacheyd-Answer-Proof"
	// AuthorizationHeader carries a client's Authorization, sealed.
	AuthorizationHeader = "X-Cacheyd-Authorization"
	// ProbePath is where a cacheyd proves it holds the secret: a GET with
	// a proof is answered 200 with an answer proof.
	ProbePath = "/cacheyd/peer"
)

// MinSecretLength is the shortest cluster secret New accepts: 32
// characters (openssl rand -base64 32 gives 44).
const MinSecretLength = 32

// maxSecretLength keeps a secret a header-sized string.
const maxSecretLength = 1024

// MaxSkew is how far a request's timestamp may be from the receiver's
// clock, either way: replicas' clocks agree to well within it (NTP), and a
// copied request is good for no longer.
const MaxSkew = time.Minute

// Why a request is refused.
var (
	ErrNoProof  = errors.New("no " + ProofHeader)
	ErrBadProof = errors.New("proof does not verify with this cluster's secret")
	ErrStale    = fmt.Errorf("proof timestamp more than %s from this clock", MaxSkew)
	ErrSealed   = errors.New(AuthorizationHeader + " does not open with this cluster's secret")
)

// Keys are the keys derived from one cluster secret. Safe for concurrent
// use.
type Keys struct {
	request, answer []byte
	seal            cipher.AEAD
}

// Validate checks a cluster secret: at least MinSecretLength characters of
// visible ASCII (a trailing newline from a file is refused, not trimmed, so
// that every replica reads the same secret).
func Validate(secret string) error {
	if len(secret) < MinSecretLength {
		return fmt.Errorf("cluster secret shorter than %d characters", MinSecretLength)
	}
	if len(secret) > maxSecretLength {
		return fmt.Errorf("cluster secret longer than %d characters", maxSecretLength)
	}
	for i := 0; i < len(secret); i++ {
		if secret[i] <= ' ' || secret[i] > '~' {
			return errors.New("cluster secret holds a character other than visible ASCII (a trailing newline?)")
		}
	}
	return nil
}

// New derives the keys of secret.
func New(secret string) (*Keys, error) {
	if err := Validate(secret); err != nil {
		return nil, err
	}
	derive := func(purpose string) []byte {
		k, err := hkdf.Key(sha256.New, []byte(secret), []byte("cacheyd cluster"), "cacheyd "+purpose+" v1", 32)
		if err != nil {
			panic(err) // only for lengths beyond 255 hashes
		}
		return k
	}
	block, err := aes.NewCipher(derive("authorization seal"))
	if err != nil {
		return nil, fmt.Errorf("peerauth: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("peerauth: %w", err)
	}
	return &Keys{request: derive("request proof"), answer: derive("answer proof"), seal: aead}, nil
}

// Nonce is a request's random nonce.
type Nonce [12]byte

// Proof is one request's identity: its time and its nonce, fresh for each
// request. The answer is proven over it, and the Authorization sealed with
// it.
type Proof struct {
	Time  int64 // Unix seconds
	Nonce Nonce
}

// NewProof returns a fresh proof for a request sent at now.
func NewProof(now time.Time) Proof {
	p := Proof{Time: now.Unix()}
	_, _ = rand.Read(p.Nonce[:]) // never fails (crypto/rand)
	return p
}

// Request is what a request's proof covers, each as sent.
type Request struct {
	Method string
	// URI is the request target: path and query exactly as sent.
	URI    string
	Range  string
	Accept string
	Via    string
	// Sealed is the AuthorizationHeader, if any.
	Sealed string
}

// Sign returns the ProofHeader of r, sent with p.
func (k *Keys) Sign(p Proof, r Request) string {
	return "1." + strconv.FormatInt(p.Time, 10) + "." + base64.RawURLEncoding.EncodeToString(p.Nonce[:]) + "." + base64.RawURLEncoding.EncodeToString(k.requestMAC(p, r))
}

// Verify checks header, a request's ProofHeader, against what the request
// asks and the clock, and returns the request's proof.
func (k *Keys) Verify(header string, r Request, now time.Time) (Proof, error) {
	if header == "" {
		return Proof{}, ErrNoProof
	}
	p, mac, err := parseProof(header)
	if err != nil {
		return Proof{}, err
	}
	if !hmac.Equal(mac, k.requestMAC(p, r)) {
		return Proof{}, ErrBadProof
	}
	if d := now.Sub(time.Unix(p.Time, 0)); d > MaxSkew || d < -MaxSkew {
		return Proof{}, ErrStale
	}
	return p, nil
}

// parseProof reads "1.<unix seconds>.<nonce>.<mac>".
func parseProof(header string) (Proof, []byte, error) {
	var p Proof
	parts := strings.Split(header, ".")
	if len(parts) != 4 || parts[0] != "1" || len(parts[1]) > 19 {
		return p, nil, ErrBadProof
	}
	t, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return p, nil, ErrBadProof
	}
	n, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || len(n) != len(p.Nonce) {
		return p, nil, ErrBadProof
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(mac) != sha256.Size {
		return p, nil, ErrBadProof
	}
	p.Time = t
	copy(p.Nonce[:], n)
	return p, mac, nil
}

func (k *Keys) requestMAC(p Proof, r Request) []byte {
	m := hmac.New(sha256.New, k.request)
	m.Write(fields(nil, "cacheyd request", strconv.FormatInt(p.Time, 10), string(p.Nonce[:]),
		r.Method, r.URI, r.Range, r.Accept, r.Via, r.Sealed))
	return m.Sum(nil)
}

// Answer is what an answer's proof covers, each header as sent (empty when
// absent); ContentLength is the body's length in decimal, -1 when it is
// not known ahead (chunked).
type Answer struct {
	Status        int
	Digest        string
	ContentType   string
	ContentLength string
	ContentRange  string
	Source        string
	Relayed       string
	Challenge     string
	RetryAfter    string
}

// AnswerOf is the Answer a client reads from a response with status,
// headers h and Content-Length n (-1 when unknown), as net/http gives
// them: what the asking cacheyd checks the proof against.
func AnswerOf(status int, h http.Header, n int64) Answer {
	return Answer{
		Status:        status,
		Digest:        h.Get("Docker-Content-Digest"),
		ContentType:   h.Get("Content-Type"),
		ContentLength: strconv.FormatInt(n, 10),
		ContentRange:  h.Get("Content-Range"),
		Source:        h.Get(oci.SourceHeader),
		Relayed:       h.Get(oci.RelayedHeader),
		Challenge:     h.Get("WWW-Authenticate"),
		RetryAfter:    h.Get("Retry-After"),
	}
}

// SignAnswer returns the AnswerHeader of a, the answer to the request
// proven with p.
func (k *Keys) SignAnswer(p Proof, a Answer) string {
	return base64.RawURLEncoding.EncodeToString(k.answerMAC(p, a))
}

// VerifyAnswer checks header, an answer's AnswerHeader, against the answer
// and the request's proof p.
func (k *Keys) VerifyAnswer(p Proof, a Answer, header string) error {
	mac, err := base64.RawURLEncoding.Strict().DecodeString(header)
	if err != nil || !hmac.Equal(mac, k.answerMAC(p, a)) {
		return errors.New("answer not proven with this cluster's secret")
	}
	return nil
}

func (k *Keys) answerMAC(p Proof, a Answer) []byte {
	m := hmac.New(sha256.New, k.answer)
	m.Write(fields(nil, "cacheyd answer", string(p.Nonce[:]), strconv.Itoa(a.Status), a.Digest, a.ContentType,
		a.ContentLength, a.ContentRange, a.Source, a.Relayed, a.Challenge, a.RetryAfter))
	return m.Sum(nil)
}

// Seal seals authorization for the request proven with p to uri (its
// AuthorizationHeader). Each p seals one value only: its nonce is the GCM
// nonce.
func (k *Keys) Seal(p Proof, uri, authorization string) string {
	return base64.RawURLEncoding.EncodeToString(k.seal.Seal(nil, p.Nonce[:], []byte(authorization), sealData(p, uri)))
}

// Unseal opens sealed, the AuthorizationHeader of the request proven with p
// to uri.
func (k *Keys) Unseal(p Proof, uri, sealed string) (string, error) {
	ct, err := base64.RawURLEncoding.Strict().DecodeString(sealed)
	if err != nil {
		return "", ErrSealed
	}
	pt, err := k.seal.Open(nil, p.Nonce[:], ct, sealData(p, uri))
	if err != nil {
		return "", ErrSealed
	}
	return string(pt), nil
}

func sealData(p Proof, uri string) []byte {
	return fields(nil, "cacheyd authorization", strconv.FormatInt(p.Time, 10), uri)
}

// fields appends each field with its length first, so that no two lists of
// fields encode the same.
func fields(b []byte, fs ...string) []byte {
	for _, f := range fs {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}
