package peerauth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	secret = "0123456789abcdefghijklmnopqrstuvwxyz-cluster"
	other  = "another-cluster-secret-0123456789abcdefghij"
)

func keys(t *testing.T, s string) *Keys {
	t.Helper()
	k, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		secret string
		ok     bool
	}{
		{secret, true},
		{strings.Repeat("x", MinSecretLength), true},
		{strings.Repeat("x", MinSecretLength-1), false},
		{secret + "\n", false},
		{"with a space 0123456789abcdefghijklmnop", false},
		{strings.Repeat("x", maxSecretLength+1), false},
	} {
		if err := Validate(tt.secret); (err == nil) != tt.ok {
			t.Errorf("Validate(%.20q...) = %v, want ok %v", tt.secret, err, tt.ok)
		}
	}
	if _, err := New("short"); err == nil {
		t.Error("New accepted a short secret")
	}
}

var req = Request{Method: "GET", URI: "/v2/library/app/blobs/sha256:ab?ns=docker.io", Range: "bytes=5-",
	Accept: "application/vnd.oci.image.manifest.v1+json", Via: "a1b2,c3d4", Sealed: "sealed"}

// TestRequestProofs: a request's proof verifies for exactly what it was
// made for, with the same secret, within MaxSkew.
func TestRequestProofs(t *testing.T) {
	k := keys(t, secret)
	now := time.Unix(1_800_000_000, 0)
	p := NewProof(now)
	h := k.Sign(p, req)
	got, err := k.Verify(h, req, now.Add(MaxSkew))
	if err != nil || got != p {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, p)
	}
	changed := func(f func(*Request)) Request { r := req; f(&r); return r }
	for _, tt := range []struct {
		name   string
		k      *Keys
		header string
		r      Request
		now    time.Time
		want   error
	}{
		{"no proof", k, "", req, now, ErrNoProof},
		{"another secret", keys(t, other), h, req, now, ErrBadProof},
		{"another method", k, h, changed(func(r *Request) { r.Method = "HEAD" }), now, ErrBadProof},
		{"another path", k, h, changed(func(r *Request) { r.URI = "/v2/library/other/blobs/sha256:ab?ns=docker.io" }), now, ErrBadProof},
		{"another range", k, h, changed(func(r *Request) { r.Range = "" }), now, ErrBadProof},
		{"another accept", k, h, changed(func(r *Request) { r.Accept = "*/*" }), now, ErrBadProof},
		{"another via", k, h, changed(func(r *Request) { r.Via = "a1b2" }), now, ErrBadProof},
		{"another sealed authorization", k, h, changed(func(r *Request) { r.Sealed = "" }), now, ErrBadProof},
		{"fields moved between each other", k, h, changed(func(r *Request) { r.Range, r.Accept = "", "bytes=5-"+r.Accept }), now, ErrBadProof},
		{"too old", k, h, req, now.Add(MaxSkew + time.Second), ErrStale},
		{"from the future", k, h, req, now.Add(-MaxSkew - time.Second), ErrStale},
		{"malformed", k, "1.x.y.z", req, now, ErrBadProof},
		{"another version", k, "2" + h[1:], req, now, ErrBadProof},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.k.Verify(tt.header, tt.r, tt.now); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	if NewProof(now).Nonce == p.Nonce {
		t.Error("two proofs with one nonce")
	}
}

// TestAnswerProofs: an answer's proof verifies for the request it answers
// and the headers it was made over, with the same secret; a request's
// proof is no answer's.
func TestAnswerProofs(t *testing.T) {
	k := keys(t, secret)
	p := NewProof(time.Now())
	a := Answer{Status: 200, Digest: "sha256:ab", ContentType: "application/octet-stream", ContentLength: "20",
		ContentRange: "", Source: "joined", Relayed: "", Challenge: "", RetryAfter: ""}
	h := k.SignAnswer(p, a)
	if err := k.VerifyAnswer(p, a, h); err != nil {
		t.Fatalf("VerifyAnswer = %v", err)
	}
	changed := func(f func(*Answer)) Answer { b := a; f(&b); return b }
	for name, tt := range map[string]struct {
		k      *Keys
		p      Proof
		a      Answer
		header string
	}{
		"another secret":  {keys(t, other), p, a, h},
		"another request": {k, NewProof(time.Now()), a, h},
		"another status":  {k, p, changed(func(a *Answer) { a.Status = 206 }), h},
		"another digest":  {k, p, changed(func(a *Answer) { a.Digest = "sha256:cd" }), h},
		"another type":    {k, p, changed(func(a *Answer) { a.ContentType = "text/html" }), h},
		"another length":  {k, p, changed(func(a *Answer) { a.ContentLength = "-1" }), h},
		"a range":         {k, p, changed(func(a *Answer) { a.ContentRange = "bytes 0-1/20" }), h},
		"another source":  {k, p, changed(func(a *Answer) { a.Source = "disk" }), h},
		"marked relayed":  {k, p, changed(func(a *Answer) { a.Relayed = "1" }), h},
		"a challenge":     {k, p, changed(func(a *Answer) { a.Challenge = `Bearer realm="https://evil"` }), h},
		"a Retry-After":   {k, p, changed(func(a *Answer) { a.RetryAfter = "1" }), h},
		"no proof":        {k, p, a, ""},
		"a request proof": {k, p, a, strings.Split(k.Sign(p, req), ".")[3]},
	} {
		if err := tt.k.VerifyAnswer(tt.p, tt.a, tt.header); err == nil {
			t.Errorf("%s: VerifyAnswer accepted it", name)
		}
	}
}

// TestSealedAuthorization: a sealed Authorization opens for the request it
// was sealed for, with the same secret, and for nothing else; it does not
// show the credentials.
func TestSealedAuthorization(t *testing.T) {
	k := keys(t, secret)
	p := NewProof(time.Now())
	const auth = "Basic YWxpY2U6c2VjcmV0"
	sealed := k.Seal(p, req.URI, auth)
	if strings.Contains(sealed, auth) || strings.Contains(sealed, "YWxpY2U") {
		t.Fatalf("sealed %q shows the credentials", sealed)
	}
	if got, err := k.Unseal(p, req.URI, sealed); err != nil || got != auth {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	later := p
	later.Time++
	for name, open := range map[string]func() (string, error){
		"another secret":  func() (string, error) { return keys(t, other).Unseal(p, req.URI, sealed) },
		"another request": func() (string, error) { return k.Unseal(NewProof(time.Now()), req.URI, sealed) },
		"another time":    func() (string, error) { return k.Unseal(later, req.URI, sealed) },
		"another path":    func() (string, error) { return k.Unseal(p, "/v2/other/blobs/sha256:ab", sealed) },
		"altered":         func() (string, error) { return k.Unseal(p, req.URI, "A"+sealed[1:]) },
		"not base64":      func() (string, error) { return k.Unseal(p, req.URI, "!!") },
	} {
		if got, err := open(); !errors.Is(err, ErrSealed) || got != "" {
			t.Errorf("%s: Unseal = %q, %v; want ErrSealed", name, got, err)
		}
	}
}

// FuzzVerify: any ProofHeader a client sends is refused without a panic
// unless it is a real proof.
func FuzzVerify(f *testing.F) {
	k, err := New(secret)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Add(k.Sign(NewProof(now), req))
	f.Add("1.1800000000.AAAAAAAAAAAAAAAA.AAAA")
	f.Add("")
	f.Add("1....")
	f.Fuzz(func(t *testing.T, header string) {
		p, err := k.Verify(header, req, now)
		if err == nil && k.Sign(p, req) != header {
			t.Errorf("accepted %q, which is not the proof of its nonce", header)
		}
	})
}
