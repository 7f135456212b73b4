package origintest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/cacheyd/cacheyd/oci"
)

func TestFakeConforms(t *testing.T) {
	Conformance(t, Suite{New: Fake})
}

func get(dg oci.Digest) *oci.Request {
	return &oci.Request{Method: http.MethodGet, Kind: oci.KindBlob, Registry: "docker.io", Repository: "library/app",
		Reference: oci.Reference{Digest: dg}}
}

func head(dg oci.Digest) *oci.Request {
	r := get(dg)
	r.Method = http.MethodHead
	return r
}

// fetchAll fetches req from o and reads the whole body.
func fetchAll(t *testing.T, o Fetcher, req *oci.Request) (*oci.Response, []byte, error) {
	t.Helper()
	resp, err := o.Fetch(t.Context(), req)
	if err != nil {
		return nil, nil, err
	}
	got, err := readBody(resp)
	return resp, got, err
}

// TestFaultsRunDown: a fault given Times spoils that many requests of its
// methods, whatever they ask for, and then none; Off and Always change it
// mid-test; Only picks the methods.
func TestFaultsRunDown(t *testing.T) {
	o := New()
	data := RandomBytes(t, 1000)
	dg := o.Add(data, "")
	boom := errors.New("boom")
	heads := Fail(o, boom).Only(http.MethodHead).Times(2)
	cut := Cut(heads, 100).Times(2)
	var outcomes []string
	for _, req := range []*oci.Request{head(dg), get(dg), get("sha256:" + oci.Digest(bytes.Repeat([]byte("0"), 64))), get(dg), head(dg), head(dg)} {
		_, got, err := fetchAll(t, cut, req)
		switch {
		case errors.Is(err, boom):
			outcomes = append(outcomes, "failed")
		case errors.Is(err, io.ErrUnexpectedEOF) && len(got) == 100:
			outcomes = append(outcomes, "cut")
		case err == nil:
			outcomes = append(outcomes, "ok")
		default:
			outcomes = append(outcomes, err.Error())
		}
	}
	// The unknown digest's GET (a 404) takes the second cut.
	want := []string{"failed", "cut", "404 BLOB_UNKNOWN: unknown", "ok", "failed", "ok"}
	if !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %q, want %q", outcomes, want)
	}
	if n := o.Count(http.MethodHead, oci.KindBlob, string(dg)); n != 3 {
		t.Errorf("the fake counted %d HEADs, want 3 (the failed ones too)", n)
	}
	if cut.Left() != 0 || heads.Left() != 0 {
		t.Errorf("left %d cuts and %d failures, want none", cut.Left(), heads.Left())
	}
	cut.Always()
	if _, _, err := fetchAll(t, cut, get(dg)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("after Always: %v, want the cut", err)
	}
	cut.Off()
	if _, got, err := fetchAll(t, cut, get(dg)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after Off: %d bytes, %v; want the object", len(got), err)
	}
	if n := o.OpenBodies(); n != 0 {
		t.Errorf("%d bodies left open", n)
	}
}

// TestHeldBodies: Gate holds the second half until it closes, Pace lets
// out as many bytes as it is sent, and Hang what comes before its hang;
// each body ends with its request's context.
func TestHeldBodies(t *testing.T) {
	o := New()
	data := RandomBytes(t, 1000)
	dg := o.Add(data, "")

	gate := make(chan struct{})
	resp, err := Gate(o, gate).Fetch(t.Context(), get(dg))
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 500)
	if _, err := io.ReadFull(resp.Body, first); err != nil || !bytes.Equal(first, data[:500]) {
		t.Fatalf("before the gate: %v", err)
	}
	close(gate)
	if rest, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(rest, data[500:]) {
		t.Errorf("after the gate: %d bytes, %v", len(rest), err)
	}
	resp.Body.Close()

	pace := make(chan int)
	resp, err = Pace(o, pace).Fetch(t.Context(), get(dg))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte)
	// Stops when the body ends: the pace closes below.
	go func() {
		got, _ := io.ReadAll(resp.Body)
		done <- got
	}()
	for range 3 {
		pace <- 300 // taken only once the 300 before are read
	}
	close(pace)
	if got := <-done; !bytes.Equal(got, data) {
		t.Errorf("paced: %d bytes, want the %d", len(got), len(data))
	}
	resp.Body.Close()

	resp, err = Pace(o, make(chan int)).Fetch(t.Context(), get(dg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n, err := resp.Body.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Errorf("a closed paced body read %d bytes, %v", n, err)
	}
	if n := o.OpenBodies(); n != 0 {
		t.Errorf("%d bodies left open", n)
	}
}

// TestAnswersChanged: UnknownSize, NoDigest, Corrupt, IgnoreRange and
// Private change what the fake answers, and Record sees what was asked.
func TestAnswersChanged(t *testing.T) {
	o := New()
	data := RandomBytes(t, 1000)
	dg := o.Add(data, "")

	resp, _, err := fetchAll(t, NoDigest(UnknownSize(o)), get(dg))
	if err != nil || resp.Size != -1 || resp.End != -1 || resp.Digest != "" {
		t.Errorf("UnknownSize, NoDigest: %+v, %v", resp, err)
	}
	_, got, err := fetchAll(t, Corrupt(o), get(dg))
	if err != nil || len(got) != len(data) || bytes.Equal(got, data) || got[500] != data[500]^0xff {
		t.Errorf("Corrupt: %d bytes, %v; want byte 500 flipped", len(got), err)
	}
	rec := Record(IgnoreRange(o))
	req := get(dg)
	req.Offset = 300
	if resp, got, err := fetchAll(t, rec, req); err != nil || resp.Offset != 0 || !bytes.Equal(got, data) {
		t.Errorf("IgnoreRange: %d bytes from %d, %v; want the whole object", len(got), resp.Offset, err)
	}
	if offs := rec.GETOffsets(); !slices.Equal(offs, []int64{300}) {
		t.Errorf("GETOffsets = %v, want [300]", offs)
	}
	private := Private(Record(o), "Bearer alice")
	req = get(dg)
	if _, _, err := fetchAll(t, private, req); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("Private, no credentials: %v, want 401", err)
	}
	req.Authorization = "Bearer alice"
	if _, got, err := fetchAll(t, private, req); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Private, the credentials: %v", err)
	}
	if FakeOf(private) != o || FakeOf(Func(nil)) != nil {
		t.Error("FakeOf did not find the fake beneath its wrappers")
	}
	if n := o.OpenBodies(); n != 0 {
		t.Errorf("%d bodies left open", n)
	}
}
