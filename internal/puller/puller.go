// Package puller pulls an image over the distribution API the way containerd
// does through a mirror: HEAD the tag, GET the index or manifest by digest,
// pick the platform, GET the config and layers (a few at a time), adding
// ?ns=<registry> to every request. It verifies every digest it receives.
// Tests and the benchmark harness use it to stand in for a node.
package puller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cacheyd/cacheyd/oci"
)

// Puller pulls images from one mirror.
type Puller struct {
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// Base is the mirror's URL, such as http://127.0.0.1:30123.
	Base string
	// Namespace is sent as ?ns=; empty sends none.
	Namespace string
	// Platform picks a manifest from an index ("linux/amd64"); empty takes
	// the first.
	Platform string
	// Parallel is how many layers download at once; zero means 3, as
	// containerd's default max_concurrent_downloads.
	Parallel int
}

// Result is what one pull fetched.
type Result struct {
	// Bytes is the body bytes received and verified.
	Bytes int64
	// Blobs lists every digest fetched (manifests, config, layers).
	Blobs []oci.Digest
}

// Pull fetches repo:tag and every blob of the chosen platform.
func (p *Puller) Pull(ctx context.Context, repo, tag string) (*Result, error) {
	res := &Result{}
	var mu sync.Mutex // guards res
	add := func(d oci.Digest, n int64) {
		mu.Lock()
		res.Bytes += n
		res.Blobs = append(res.Blobs, d)
		mu.Unlock()
	}
	resp, err := p.do(ctx, http.MethodHead, repo, "manifests", tag, "")
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	dg, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return nil, fmt.Errorf("HEAD %s:%s: %w", repo, tag, err)
	}
	body, mediaType, err := p.getVerified(ctx, repo, "manifests", dg)
	if err != nil {
		return nil, err
	}
	add(dg, int64(len(body)))
	var m struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest   oci.Digest `json:"digest"`
			Platform *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
		Config struct {
			Digest oci.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest oci.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", dg.Short(), err)
	}
	if len(m.Manifests) > 0 || strings.Contains(mediaType, "index") || strings.Contains(mediaType, "list") {
		child := ""
		for _, c := range m.Manifests {
			if p.Platform == "" || (c.Platform != nil && c.Platform.OS+"/"+c.Platform.Architecture == p.Platform) {
				child = string(c.Digest)
				break
			}
		}
		if child == "" {
			return nil, fmt.Errorf("index %s: no manifest for platform %q", dg.Short(), p.Platform)
		}
		cd, err := oci.ParseDigest(child)
		if err != nil {
			return nil, err
		}
		body, _, err = p.getVerified(ctx, repo, "manifests", cd)
		if err != nil {
			return nil, err
		}
		add(cd, int64(len(body)))
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", cd.Short(), err)
		}
	}
	blobs := []oci.Digest{m.Config.Digest}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	g, gctx := errgroup.WithContext(ctx)
	parallel := p.Parallel
	if parallel <= 0 {
		parallel = 3
	}
	g.SetLimit(parallel)
	for _, d := range blobs {
		g.Go(func() error {
			d, err := oci.ParseDigest(string(d))
			if err != nil {
				return err
			}
			b, _, err := p.getVerified(gctx, repo, "blobs", d)
			if err != nil {
				return err
			}
			add(d, int64(len(b)))
			return nil
		})
	}
	return res, g.Wait()
}

// getVerified GETs a manifest or blob by digest and checks the digest.
func (p *Puller) getVerified(ctx context.Context, repo, kind string, d oci.Digest) ([]byte, string, error) {
	accept := ""
	if kind == "manifests" {
		accept = strings.Join(oci.ManifestMediaTypes, ", ")
	}
	resp, err := p.do(ctx, http.MethodGet, repo, kind, string(d), accept)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s %s: %w", kind, d.Short(), err)
	}
	sum := sha256.Sum256(body)
	if d.Algorithm() != "sha256" || hex.EncodeToString(sum[:]) != d.Hex() {
		return nil, "", fmt.Errorf("GET %s %s: digest mismatch", kind, d.Short())
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// ErrStatus is returned for a response that is not 200.
var ErrStatus = errors.New("unexpected status")

func (p *Puller) do(ctx context.Context, method, repo, kind, ref, accept string) (*http.Response, error) {
	u := p.Base + "/v2/" + repo + "/" + kind + "/" + ref
	if p.Namespace != "" {
		u += "?ns=" + url.QueryEscape(p.Namespace)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	} else if kind == "manifests" {
		req.Header.Set("Accept", strings.Join(oci.ManifestMediaTypes, ", "))
	}
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %d: %w", method, u, resp.StatusCode, ErrStatus)
	}
	return resp, nil
}
