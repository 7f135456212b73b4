package warm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cacheyd/cacheyd/oci"
)

// blob GETs one blob through cacheyd, reads it to the end and checks its
// size and digest.
func (w *warmer) blob(ctx context.Context, im Image, d v1.Descriptor) error {
	dg, err := oci.ParseDigest(d.Digest.String())
	if err != nil {
		return err
	}
	resp, err := w.do(ctx, http.MethodGet, im, "blobs", string(dg))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := dg.NewHash()
	n, err := io.Copy(io.MultiWriter(h, progressWriter(w.onBytes)), resp.Body)
	if err != nil {
		return fmt.Errorf("blob %s: after %d bytes: %w", dg.Short(), n, err)
	}
	if n != d.Size {
		return fmt.Errorf("blob %s: %d bytes, the manifest says %d", dg.Short(), n, d.Size)
	}
	if !dg.Matches(h) {
		return fmt.Errorf("blob %s: %w", dg.Short(), errDigestMismatch)
	}
	w.received(false, n)
	return nil
}

// progressWriter reports the length of each write to f.
type progressWriter func(int64)

func (f progressWriter) Write(p []byte) (int, error) {
	if f != nil {
		f(int64(len(p)))
	}
	return len(p), nil
}

// do sends one request for a manifest or blob of im to cacheyd and returns
// the response if it is a 200.
func (w *warmer) do(ctx context.Context, method string, im Image, kind, ref string) (*http.Response, error) {
	u := w.base + "/v2/" + im.Repository + "/" + kind + "/" + ref + "?ns=" + url.QueryEscape(im.Registry)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if kind == "manifests" {
		req.Header.Set("Accept", strings.Join(oci.ManifestMediaTypes, ", "))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusError(method, kind, ref, im, resp)
}

// statusError describes a refusal from cacheyd, with the OCI error message
// when there is one and a hint for the refusals an operator can act on.
func statusError(method, kind, ref string, im Image, resp *http.Response) error {
	what := fmt.Sprintf("%s %s %s: %s", method, strings.TrimSuffix(kind, "s"), short(ref), resp.Status)
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if method != http.MethodHead {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
			what += ": " + body.Errors[0].Code + " " + body.Errors[0].Message
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		what += fmt.Sprintf(" (cacheyd may not pull %s anonymously: give it credentials for %s with --credentials-file; content pulled with a client's own credentials is never cached)", im.Repository, im.Registry)
	case http.StatusNotFound:
		what += fmt.Sprintf(" (is %s right, and does cacheyd allow registry %s?)", im.String(), im.Registry)
	}
	return fmt.Errorf("%s", what)
}

// short cuts a digest for messages and leaves a tag alone.
func short(ref string) string {
	if d, err := oci.ParseDigest(ref); err == nil {
		return d.Short()
	}
	return ref
}
