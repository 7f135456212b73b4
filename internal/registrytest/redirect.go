package registrytest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// cdnPrefix starts every blob path on the CDN: /blob/<digest>?sig=<hmac>.
const cdnPrefix = "/blob/"

// SignedURL is the CDN URL the registry redirects a GET of blob digest to.
func (r *Registry) SignedURL(digest string) string {
	return r.CDNURL() + cdnPrefix + digest + "?" + url.Values{"sig": {r.sign(digest)}}.Encode()
}

func (r *Registry) sign(digest string) string {
	m := hmac.New(sha256.New, r.key)
	io.WriteString(m, digest)
	return hex.EncodeToString(m.Sum(nil))
}

// serveCDN serves a blob from a signed URL, like object storage behind a
// CDN: it refuses requests carrying Authorization (a signed URL is the only
// credential, and a client that forwards the registry's token to another
// host leaks it), and answers Range, If-Range and HEAD.
func (r *Registry) serveCDN(w http.ResponseWriter, req *http.Request, rq Request) {
	if rq.Authorization != "" {
		http.Error(w, "only one auth mechanism allowed: the URL is signed, drop the Authorization header", http.StatusBadRequest)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	digest, ok := strings.CutPrefix(req.URL.Path, cdnPrefix)
	sig, err := hex.DecodeString(req.URL.Query().Get("sig"))
	want, _ := hex.DecodeString(r.sign(digest))
	if !ok || err != nil || !hmac.Equal(sig, want) {
		http.Error(w, "signature does not match", http.StatusForbidden)
		return
	}
	h, err := v1.NewHash(digest)
	if err != nil || !r.serveBlob(w, req, h) {
		http.NotFound(w, req)
	}
}
