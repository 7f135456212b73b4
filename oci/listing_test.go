package oci

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestListQueryValidate(t *testing.T) {
	ok := []struct {
		kind Kind
		q    ListQuery
	}{
		{KindTags, ListQuery{}},
		{KindTags, ListQuery{N: "100", Last: "v1.2.3"}},
		{KindTags, ListQuery{N: "0"}},
		// ECR's page token: base64, with '/', '+' and '='.
		{KindTags, ListQuery{Last: "ukD72mdD/mC8b5xV+A3l=="}},
		{KindTags, ListQuery{N: strings.Repeat("9", maxListN)}},
		{KindTags, ListQuery{Last: strings.Repeat("a", maxListLast)}},
		{KindReferrers, ListQuery{}},
		{KindReferrers, ListQuery{ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json"}},
		{KindManifest, ListQuery{}},
	}
	for _, tt := range ok {
		if err := tt.q.Validate(tt.kind); err != nil {
			t.Errorf("%v %+v: %v", tt.kind, tt.q, err)
		}
	}
	bad := []struct {
		kind Kind
		q    ListQuery
	}{
		{KindTags, ListQuery{N: "-1"}},
		{KindTags, ListQuery{N: "1e3"}},
		{KindTags, ListQuery{N: strings.Repeat("9", maxListN+1)}},
		{KindTags, ListQuery{Last: "a b"}},
		{KindTags, ListQuery{Last: "a\r\nX-Evil: 1"}},
		{KindTags, ListQuery{Last: "é"}},
		{KindTags, ListQuery{Last: strings.Repeat("a", maxListLast+1)}},
		{KindTags, ListQuery{ArtifactType: "application/json"}},
		{KindReferrers, ListQuery{N: "1"}},
		{KindReferrers, ListQuery{Last: "a"}},
		{KindReferrers, ListQuery{ArtifactType: "not a type"}},
		{KindReferrers, ListQuery{ArtifactType: "application/json; charset=utf-8"}},
		{KindManifest, ListQuery{N: "1"}},
		{KindBlob, ListQuery{ArtifactType: "a/b"}},
	}
	for _, tt := range bad {
		err := tt.q.Validate(tt.kind)
		e, ok := AsError(err)
		if !ok || e.Status != http.StatusBadRequest {
			t.Errorf("%v %+v: %v, want a 400", tt.kind, tt.q, err)
		}
	}
}

func TestListQueryEncode(t *testing.T) {
	tests := []struct {
		q    ListQuery
		want string
	}{
		{ListQuery{}, ""},
		{ListQuery{N: "2"}, "n=2"},
		{ListQuery{N: "2", Last: "b"}, "last=b&n=2"},
		{ListQuery{Last: "a/b+c="}, "last=a%2Fb%2Bc%3D"},
		{ListQuery{ArtifactType: "application/vnd.example+json"}, "artifactType=application%2Fvnd.example%2Bjson"},
	}
	for _, tt := range tests {
		got := tt.q.Encode()
		if got != tt.want {
			t.Errorf("%+v.Encode() = %q, want %q", tt.q, got, tt.want)
		}
		// What goes upstream reads back as what was asked.
		v, err := url.ParseQuery(got)
		if err != nil {
			t.Fatal(err)
		}
		back := ListQuery{N: v.Get("n"), Last: v.Get("last"), ArtifactType: v.Get("artifactType")}
		if back != tt.q {
			t.Errorf("%q reads back as %+v, want %+v", got, back, tt.q)
		}
	}
}
