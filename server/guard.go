package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/cacheyd/cacheyd/oci"
)

// TokenHeader carries the shared client token (Config.ClientTokens).
// It is a header of its own because Authorization belongs to the client's
// registry credentials, which cacheyd forwards upstream for private
// content; containerd sends it from hosts.toml:
//
//	[host."http://node:30123".header]
//	  X-Cacheyd-Token = ["<token>"]
const TokenHeader = oci.TokenHeader

// MinClientTokenLength is the shortest client token Validate accepts.
const MinClientTokenLength = 16

// guard admits requests that carry one of the configured tokens. Only
// hashes of the tokens are kept, and every one is compared in constant
// time, so neither a token's length nor which one matched shows in timing.
type guard struct {
	sums [][sha256.Size]byte // nil: every request is admitted
}

func newGuard(tokens []string) guard {
	var g guard
	for _, t := range tokens {
		g.sums = append(g.sums, sha256.Sum256([]byte(t)))
	}
	return g
}

// enabled reports whether requests must carry a token.
func (g guard) enabled() bool { return len(g.sums) > 0 }

// admits reports whether token (the header's value) is one of the tokens.
func (g guard) admits(token []byte) bool {
	if !g.enabled() {
		return true
	}
	sum := sha256.Sum256(token)
	ok := 0
	for i := range g.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], g.sums[i][:])
	}
	return ok == 1
}

// errNoClientToken answers a request without a valid token. The challenge
// names a scheme no registry client implements, so a client such as
// containerd gives this host up and tries its next one rather than
// sending its registry credentials here.
var errNoClientToken = &oci.Error{
	Status:    http.StatusUnauthorized,
	Code:      oci.CodeUnauthorized,
	Message:   "this cache requires the " + TokenHeader + " header",
	Challenge: TokenHeader + ` realm="cacheyd"`,
}

// validClientToken checks a configured token: at least
// MinClientTokenLength characters of visible ASCII, so that it fits a
// header and a TOML string as it is.
func validClientToken(t string) error {
	if len(t) < MinClientTokenLength {
		return fmt.Errorf("client token shorter than %d characters", MinClientTokenLength)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return fmt.Errorf("client token holds a character other than visible ASCII")
		}
	}
	return nil
}
