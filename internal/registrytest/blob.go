package registrytest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blob answers GET and HEAD of a blob on the registry: a redirect to the CDN
// for GET when Options.Redirect is set, the bytes otherwise. Unknown blobs
// and malformed digests get pkg/registry's own errors.
func (r *Registry) blob(w http.ResponseWriter, req *http.Request, rq Request) {
	h, err := v1.NewHash(rq.Ref)
	if err != nil {
		r.inner.ServeHTTP(w, req)
		return
	}
	if _, err := r.blobs.(registry.BlobStatHandler).Stat(req.Context(), rq.Name, h); err != nil {
		r.inner.ServeHTTP(w, req)
		return
	}
	if r.opts.Redirect && req.Method == http.MethodGet {
		http.Redirect(w, req, r.SignedURL(h.String()), http.StatusTemporaryRedirect)
		return
	}
	w.Header().Set("Docker-Content-Digest", h.String())
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if !r.serveBlob(w, req, h) {
		r.inner.ServeHTTP(w, req)
	}
}

// serveBlob answers GET or HEAD of blob h from storage with the full HTTP
// range semantics real registries and object stores have (open-ended and
// suffix ranges, If-Range, 416), which pkg/registry's own handler lacks. It
// reports false, having written nothing, when the blob is not stored.
func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, h v1.Hash) bool {
	rc, err := r.blobs.Get(req.Context(), "", h)
	if errors.Is(err, registry.ErrNotFound) {
		return false
	} else if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	defer rc.Close()
	rs, ok := rc.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(rc)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return true
		}
		rs = bytes.NewReader(b)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+h.String()+`"`)
	http.ServeContent(w, req, "", time.Time{}, rs)
	return true
}
