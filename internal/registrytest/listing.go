package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Listings are answered as distribution's registry answers them, which
// go-containerregistry's does not quite: a tag list page (?n=, or
// Options.TagPage) that is not the last carries a Link to the next
// (?last=<its last tag>&n=), and
// referrers honour ?artifactType= and say so in OCI-Filters-Applied.

// serveTags answers a tag list, paged by n and last.
func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, rq Request) {
	q := req.URL.Query()
	n := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid n")
			return
		}
		n = v
	} else if r.opts.TagPage > 0 {
		n = r.opts.TagPage
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if !r.innerJSON(w, req, &list) {
		return
	}
	slices.Sort(list.Tags)
	if last := q.Get("last"); last != "" {
		i, _ := slices.BinarySearch(list.Tags, last)
		for i < len(list.Tags) && list.Tags[i] <= last {
			i++
		}
		list.Tags = list.Tags[i:]
	}
	if n >= 0 && n < len(list.Tags) {
		list.Tags = list.Tags[:n]
		next := url.Values{"n": {strconv.Itoa(n)}}
		if n > 0 {
			next.Set("last", list.Tags[n-1])
		}
		w.Header().Set("Link", fmt.Sprintf("</v2/%s/tags/list?%s>; rel=\"next\"", rq.Name, next.Encode()))
	}
	if list.Tags == nil {
		list.Tags = []string{}
	}
	writeJSON(w, "application/json", list)
}

// serveReferrers answers the referrers of a digest, filtered by
// artifactType.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request) {
	var idx v1.IndexManifest
	if !r.innerJSON(w, req, &idx) {
		return
	}
	if at := req.URL.Query().Get("artifactType"); at != "" {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d v1.Descriptor) bool { return d.ArtifactType != at })
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	slices.SortFunc(idx.Manifests, func(a, b v1.Descriptor) int {
		if a.Digest.String() < b.Digest.String() {
			return -1
		}
		return 1
	})
	writeJSON(w, string(types.OCIImageIndex), idx)
}

// innerJSON asks the inner registry for req's path without its query and
// decodes the answer into v. It reports false, having passed the inner
// registry's answer on, when that is not a 200.
func (r *Registry) innerJSON(w http.ResponseWriter, req *http.Request, v any) bool {
	whole := req.Clone(req.Context())
	whole.URL.RawQuery = ""
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, whole)
	if rec.Code != http.StatusOK {
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return false
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "registrytest: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// SeedReferrer stores in repo an artifact (an OCI image manifest whose
// config has artifactType as its media type) whose subject is the manifest
// subject, as cosign or notation attach a signature, and returns its
// digest. It is stored by digest only.
func (r *Registry) SeedReferrer(t testing.TB, repo string, subject v1.Descriptor, artifactType string) v1.Hash {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := r.seedRef(repo, "", d)
	if err != nil {
		t.Fatal(err)
	}
	// The config blob first, then the manifest with its subject.
	if err := remote.Write(ref, img, r.seedOptions(t.Context())...); err != nil {
		t.Fatalf("registrytest: seed referrer into %s: %v", repo, err)
	}
	withSubject := mutate.Subject(img, subject)
	raw, err := withSubject.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	ref, err = r.seedRef(repo, "", h)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref, withSubject.(remote.Taggable), r.seedOptions(t.Context())...); err != nil {
		t.Fatalf("registrytest: seed referrer into %s: %v", repo, err)
	}
	return h
}
