package peerauth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// provenBudget is a BudgetHeader stating stated as it is, proven for p:
// what a member holding the secret could send, well formed or not.
func provenBudget(k *Keys, p Proof, stated string) string {
	return stated + ";proof=" + base64.RawURLEncoding.EncodeToString(k.budgetMAC(p, stated))
}

// TestBudgetHeader: a budget stated on an answer reads back as it was
// stated, for the request it answers and with the same secret only; one
// that is not of the documented form is not believed, proven or not.
func TestBudgetHeader(t *testing.T) {
	k := keys(t, secret)
	p := NewProof(time.Now())
	b := Budget{Limit: 100, Remaining: 76, Window: 6 * time.Hour, Seen: time.Unix(1_765_158_000, 0)}
	h := k.SignBudget(p, b)
	if want := "limit=100;remaining=76;window=21600;seen=1765158000;proof="; !strings.HasPrefix(h, want) {
		t.Fatalf("SignBudget = %q, want it to start %q", h, want)
	}
	got, err := k.VerifyBudget(p, h)
	if err != nil || got != b {
		t.Fatalf("VerifyBudget = %+v, %v; want %+v", got, err, b)
	}
	noWindow := Budget{Limit: 5, Remaining: 0, Seen: time.Unix(1, 0)}
	if got, err := k.VerifyBudget(p, k.SignBudget(p, noWindow)); err != nil || got != noWindow {
		t.Errorf("VerifyBudget of a budget without a window = %+v, %v; want %+v", got, err, noWindow)
	}
	for name, tt := range map[string]struct {
		k      *Keys
		p      Proof
		header string
	}{
		"another secret":       {keys(t, other), p, h},
		"another request":      {k, NewProof(time.Now()), h},
		"changed after proof":  {k, p, strings.Replace(h, "remaining=76", "remaining=99", 1)},
		"no proof":             {k, p, "limit=100;remaining=76;window=21600;seen=1765158000"},
		"an empty header":      {k, p, ""},
		"an answer proof":      {k, p, "limit=100;remaining=76;window=21600;seen=1765158000;proof=" + k.SignAnswer(p, Answer{Status: 200})},
		"proof not base64url":  {k, p, strings.SplitAfter(h, "proof=")[0] + "***"},
		"remaining over limit": {k, p, provenBudget(k, p, "limit=10;remaining=11;window=60;seen=1765158000")},
		"a negative count":     {k, p, provenBudget(k, p, "limit=-1;remaining=0;window=60;seen=1765158000")},
		"a count too large":    {k, p, provenBudget(k, p, "limit=99999999999999;remaining=0;window=60;seen=1765158000")},
		"a window over a year": {k, p, provenBudget(k, p, "limit=10;remaining=1;window=99999999;seen=1765158000")},
		"never seen":           {k, p, provenBudget(k, p, "limit=10;remaining=1;window=60;seen=0")},
		"fields out of order":  {k, p, provenBudget(k, p, "remaining=1;limit=10;window=60;seen=1765158000")},
		"a field missing":      {k, p, provenBudget(k, p, "limit=10;remaining=1;seen=1765158000")},
		"junk after seen":      {k, p, provenBudget(k, p, "limit=10;remaining=1;window=60;seen=1765158000;by=x")},
		"spaces":               {k, p, provenBudget(k, p, "limit= 10;remaining=1;window=60;seen=1765158000")},
		"not a number":         {k, p, provenBudget(k, p, "limit=ten;remaining=1;window=60;seen=1765158000")},
	} {
		if got, err := tt.k.VerifyBudget(tt.p, tt.header); !errors.Is(err, ErrBudget) {
			t.Errorf("%s: VerifyBudget = %+v, %v; want ErrBudget", name, got, err)
		}
	}
}

// FuzzVerifyBudget: whatever a member sends, a budget is believed only
// when it reads back as the header states it.
func FuzzVerifyBudget(f *testing.F) {
	k, err := New(secret)
	if err != nil {
		f.Fatal(err)
	}
	p := Proof{Time: 1}
	f.Add("limit=100;remaining=76;window=21600;seen=1765158000", false)
	f.Add("limit=100;remaining=76;window=21600;seen=1765158000", true)
	f.Add("limit=;remaining=;window=;seen=", true)
	f.Add(";proof=", false)
	f.Fuzz(func(t *testing.T, stated string, prove bool) {
		h := stated
		if prove {
			h = provenBudget(k, p, stated)
		}
		b, err := k.VerifyBudget(p, h)
		if err != nil {
			return
		}
		if b.Remaining > b.Limit || b.Limit > maxBudgetCount || b.Remaining < 0 || b.Window < 0 || b.Seen.Unix() <= 0 {
			t.Fatalf("VerifyBudget(%q) = %+v: not a budget", h, b)
		}
		if again := k.SignBudget(p, b); again != h {
			t.Fatalf("VerifyBudget(%q) = %+v, which states %q", h, b, again)
		}
	})
}
