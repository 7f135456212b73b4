package peerauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// BudgetHeader carries, on a member's answer to a proven request for a
// manifest, the pull budget that member last read from the request's
// registry itself (never one it heard from another member):
//
//	X-Cacheyd-Budget: limit=100;remaining=76;window=21600;seen=1765158000;proof=<mac>
//
// limit and remaining are pulls per window and pulls left in it, window
// its length in seconds (0: the registry did not say), seen the Unix
// second the member read it, each in this order, in decimal; proof is an
// HMAC-SHA256 with the answer key over the request's nonce and everything
// before ";proof=", base64url without padding. The answer's own proof
// (AnswerHeader) does not cover this header: a cacheyd that does not know
// it neither sends nor checks it, and the two still agree on every answer.
const BudgetHeader = "X-Cacheyd-Budget"

// Budget is a registry's pull budget as a member last read it.
type Budget struct {
	// Limit and Remaining are pulls per window and pulls left in it.
	Limit, Remaining int64
	// Window is the budget's window in whole seconds; zero when the
	// registry did not say.
	Window time.Duration
	// Seen is when the member read it, to the second.
	Seen time.Time
}

// Bounds of a budget worth believing, the upstream client's own: counts
// beyond maxBudgetCount and windows beyond maxBudgetWindow are garbage.
const (
	maxBudgetCount  = 1 << 40
	maxBudgetWindow = int64(366 * 24 * time.Hour / time.Second)
)

// ErrBudget is why a BudgetHeader is not believed: it is not of the form
// above, states no budget a registry gives, or is not proven for this
// request with this cluster's secret.
var ErrBudget = errors.New(BudgetHeader + " unreadable or not proven with this cluster's secret")

// budgetKeys are the fields of a BudgetHeader, in their order.
var budgetKeys = [...]string{"limit", "remaining", "window", "seen"}

// SignBudget returns the BudgetHeader stating b on the answer to the
// request proven with p.
func (k *Keys) SignBudget(p Proof, b Budget) string {
	stated := "limit=" + strconv.FormatInt(b.Limit, 10) + ";remaining=" + strconv.FormatInt(b.Remaining, 10) +
		";window=" + strconv.FormatInt(int64(b.Window/time.Second), 10) + ";seen=" + strconv.FormatInt(b.Seen.Unix(), 10)
	return stated + ";proof=" + base64.RawURLEncoding.EncodeToString(k.budgetMAC(p, stated))
}

// VerifyBudget reads header, a BudgetHeader on the answer to the request
// proven with p. An error wraps ErrBudget.
func (k *Keys) VerifyBudget(p Proof, header string) (Budget, error) {
	stated, proof, ok := strings.Cut(header, ";proof=")
	if !ok {
		return Budget{}, fmt.Errorf("%w: no proof", ErrBudget)
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(proof)
	if err != nil || !hmac.Equal(mac, k.budgetMAC(p, stated)) {
		return Budget{}, fmt.Errorf("%w: proof does not verify", ErrBudget)
	}
	fs := strings.Split(stated, ";")
	if len(fs) != len(budgetKeys) {
		return Budget{}, fmt.Errorf("%w: %d fields", ErrBudget, len(fs))
	}
	var n [len(budgetKeys)]int64
	for i, key := range budgetKeys {
		v, found := strings.CutPrefix(fs[i], key+"=")
		if !found {
			return Budget{}, fmt.Errorf("%w: %s missing", ErrBudget, key)
		}
		if n[i], err = budgetCount(v); err != nil {
			return Budget{}, fmt.Errorf("%w: %s %.20q", ErrBudget, key, v)
		}
	}
	b := Budget{Limit: n[0], Remaining: n[1], Window: time.Duration(n[2]) * time.Second, Seen: time.Unix(n[3], 0)}
	switch {
	case b.Remaining > b.Limit:
		return Budget{}, fmt.Errorf("%w: remaining over limit", ErrBudget)
	case n[2] > maxBudgetWindow:
		return Budget{}, fmt.Errorf("%w: window over a year", ErrBudget)
	case n[3] == 0:
		return Budget{}, fmt.Errorf("%w: never seen", ErrBudget)
	}
	return b, nil
}

// budgetCount reads a decimal count up to maxBudgetCount as SignBudget
// writes it: digits only, no sign, no space, no leading zero.
func budgetCount(s string) (int64, error) {
	if s == "" || len(s) > 13 || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, ErrBudget
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxBudgetCount {
		return 0, ErrBudget
	}
	return n, nil
}

// budgetMAC is over its own label, so that it passes for no answer proof.
func (k *Keys) budgetMAC(p Proof, stated string) []byte {
	m := hmac.New(sha256.New, k.answer)
	m.Write(fields(nil, "cacheyd budget", string(p.Nonce[:]), stated))
	return m.Sum(nil)
}
