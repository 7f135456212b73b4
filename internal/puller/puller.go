// Package puller pulls an image over the distribution API the way containerd
// does through a mirror: HEAD the tag, GET the index or manifest by digest,
// pick the platform, GET the config and layers (a few at a time), adding
// ?ns=<registry> to every request. It verifies every digest it receives,
// streaming blobs through the hash rather than holding them, resumes a
// broken blob download with Range, and answers a registry's Bearer
// challenge, so it can pull from a mirror or from the registry itself.
// Tests and the benchmark harness use it to stand in for a node.
package puller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cacheyd/cacheyd/oci"
)

// Puller pulls images from one mirror or registry. Its fields must not
// change once a pull has started; one Puller may run several pulls at once.
type Puller struct {
	// Client sends the requests; nil means http.DefaultClient. Redirects
	// are followed by the Puller itself (its copy of Client follows none),
	// so that Authorization goes only to the host that asked for it.
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
	// Known, when set, is asked before each config and layer download, and
	// blobs it reports are skipped, as containerd skips content its store
	// already holds. Nil fetches every blob.
	Known func(oci.Digest) bool
	// Resume is how many times one blob download that breaks off is
	// continued with "Range: bytes=N-" from the byte it reached, the way
	// containerd resumes an interrupted ingest. Zero means a broken
	// download fails the pull.
	Resume int
	// Progress, when set, is told the size of every piece of body that
	// arrives. It is called from the downloading goroutines concurrently.
	Progress func(n int64)
	// Observe, when set, is told about every manifest and blob fetch by
	// digest when it ends, successful or not. It is called from the
	// downloading goroutines concurrently.
	Observe func(Fetch)

	mu     sync.Mutex        // guards tokens
	tokens map[string]string // Bearer token by repository, from answered challenges
}

// Fetch describes one manifest or blob fetched by digest.
type Fetch struct {
	// Kind is "manifests" or "blobs".
	Kind   string
	Digest oci.Digest
	// Start is when the first request for it was sent.
	Start time.Time
	// FirstByte is when its first body byte arrived; zero if none did.
	FirstByte time.Time
	// End is when it was verified, or failed.
	End time.Time
	// Bytes counts the body bytes received, over every attempt.
	Bytes int64
	// Resumes counts the Range requests that continued it.
	Resumes int
	// Err is why it failed; nil when the digest was verified.
	Err error
}

// Result is what one pull fetched.
type Result struct {
	// Bytes is the body bytes received and verified.
	Bytes int64
	// Blobs lists every digest fetched (manifests, config, layers), but not
	// those Known said were there already.
	Blobs []oci.Digest
}

// ErrStatus is wrapped by every error for a response that is not the one
// asked for (200, or 206 for a Range); see StatusError.
var ErrStatus = errors.New("unexpected status")

// StatusError is an unexpected response status.
type StatusError struct {
	Method, URL string
	Status      int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d: %v", e.Method, e.URL, e.Status, ErrStatus)
}

// Is makes errors.Is(err, ErrStatus) true.
func (e *StatusError) Is(target error) bool { return target == ErrStatus }

// maxRedirects bounds the redirects followed for one request.
const maxRedirects = 5

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
	body, mediaType, err := p.getManifest(ctx, repo, dg)
	if err != nil {
		return nil, err
	}
	add(dg, int64(len(body)))
	m, err := parseManifest(dg, body)
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) > 0 || strings.Contains(mediaType, "index") || strings.Contains(mediaType, "list") {
		cd, err := m.pick(p.Platform)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", dg.Short(), err)
		}
		body, _, err = p.getManifest(ctx, repo, cd)
		if err != nil {
			return nil, err
		}
		add(cd, int64(len(body)))
		if m, err = parseManifest(cd, body); err != nil {
			return nil, err
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
		d, err := oci.ParseDigest(string(d))
		if err != nil {
			return nil, fmt.Errorf("manifest of %s:%s: %w", repo, tag, err)
		}
		if p.Known != nil && p.Known(d) {
			continue
		}
		g.Go(func() error {
			n, err := p.getBlob(gctx, repo, d)
			if err != nil {
				return err
			}
			add(d, n)
			return nil
		})
	}
	return res, g.Wait()
}

// manifest is what a pull reads of an index or image manifest.
type manifest struct {
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

func parseManifest(d oci.Digest, body []byte) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Short(), err)
	}
	return &m, nil
}

// decodeJSON decodes a small JSON answer (a token) into v.
func decodeJSON(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(v)
}

// pick returns the digest of the index entry for platform ("" takes the
// first).
func (m *manifest) pick(platform string) (oci.Digest, error) {
	for _, c := range m.Manifests {
		if platform == "" || (c.Platform != nil && c.Platform.OS+"/"+c.Platform.Architecture == platform) {
			return oci.ParseDigest(string(c.Digest))
		}
	}
	return "", fmt.Errorf("no manifest for platform %q", platform)
}

// getManifest GETs a manifest by digest, whole, and checks the digest.
func (p *Puller) getManifest(ctx context.Context, repo string, d oci.Digest) ([]byte, string, error) {
	f := Fetch{Kind: "manifests", Digest: d, Start: time.Now()}
	body, mediaType, err := p.readManifest(ctx, repo, &f)
	p.observe(&f, err)
	return body, mediaType, err
}

func (p *Puller) readManifest(ctx context.Context, repo string, f *Fetch) ([]byte, string, error) {
	resp, err := p.do(ctx, http.MethodGet, repo, "manifests", string(f.Digest), "")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(&observedReader{r: resp.Body, p: p, f: f}, oci.MaxManifestSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET manifest %s: %w", f.Digest.Short(), err)
	}
	if !matches(f.Digest, body) {
		return nil, "", fmt.Errorf("GET manifest %s: digest mismatch", f.Digest.Short())
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// matches reports whether body has digest d, whatever its algorithm.
func matches(d oci.Digest, body []byte) bool {
	h := d.NewHash()
	h.Write(body)
	return d.Matches(h)
}

// getBlob streams a blob by digest through its hash, resuming a broken
// download with Range up to p.Resume times, and returns its size once the
// digest is verified.
func (p *Puller) getBlob(ctx context.Context, repo string, d oci.Digest) (int64, error) {
	f := Fetch{Kind: "blobs", Digest: d, Start: time.Now()}
	n, err := p.readBlob(ctx, repo, &f)
	p.observe(&f, err)
	return n, err
}

func (p *Puller) readBlob(ctx context.Context, repo string, f *Fetch) (int64, error) {
	h := f.Digest.NewHash()
	var got int64 // bytes hashed so far, the offset to resume from
	for {
		rng := ""
		if got > 0 {
			rng = fmt.Sprintf("bytes=%d-", got)
		}
		n, restarted, err := p.readBlobFrom(ctx, repo, f, h, rng, got)
		if restarted {
			got = 0
		}
		got += n
		if err == nil {
			break
		}
		if f.Resumes >= p.Resume || ctx.Err() != nil {
			return got, fmt.Errorf("GET blob %s after %d bytes: %w", f.Digest.Short(), got, err)
		}
		f.Resumes++
	}
	if !f.Digest.Matches(h) {
		return got, fmt.Errorf("GET blob %s: digest mismatch", f.Digest.Short())
	}
	return got, nil
}

// readBlobFrom sends one GET of the blob (with Range rng when not empty)
// and hashes its body into h. A server that ignores the Range and answers
// 200 restarts the hash: restarted reports that.
func (p *Puller) readBlobFrom(ctx context.Context, repo string, f *Fetch, h hash.Hash, rng string, from int64) (n int64, restarted bool, err error) {
	resp, err := p.do(ctx, http.MethodGet, repo, "blobs", string(f.Digest), rng)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if rng != "" {
		switch resp.StatusCode {
		case http.StatusOK:
			h.Reset()
			restarted = true
		case http.StatusPartialContent:
			if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-", from)) {
				return 0, false, fmt.Errorf("asked for %s, got Content-Range %q", rng, cr)
			}
		}
	}
	n, err = io.Copy(h, &observedReader{r: resp.Body, p: p, f: f})
	return n, restarted, err
}

func (p *Puller) observe(f *Fetch, err error) {
	if p.Observe != nil {
		f.End, f.Err = time.Now(), err
		p.Observe(*f)
	}
}

// observedReader notes the first byte and the bytes of a fetch's body.
type observedReader struct {
	r io.Reader
	p *Puller
	f *Fetch
}

func (o *observedReader) Read(b []byte) (int, error) {
	n, err := o.r.Read(b)
	if n > 0 {
		if o.f.FirstByte.IsZero() {
			o.f.FirstByte = time.Now()
		}
		o.f.Bytes += int64(n)
		if o.p.Progress != nil {
			o.p.Progress(int64(n))
		}
	}
	return n, err
}

// do sends one request for repo's kind/ref and returns the response when
// its status is 200 (or 206 for a Range request). It answers a Bearer
// challenge once and follows redirects, sending Authorization only to the
// host it was sent to first.
func (p *Puller) do(ctx context.Context, method, repo, kind, ref, rng string) (*http.Response, error) {
	u := p.Base + "/v2/" + repo + "/" + kind + "/" + ref
	if p.Namespace != "" {
		u += "?ns=" + url.QueryEscape(p.Namespace)
	}
	for challenged := false; ; challenged = true {
		resp, err := p.send(ctx, method, u, kind, rng, p.token(repo))
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusOK, rng != "" && resp.StatusCode == http.StatusPartialContent:
			return resp, nil
		case resp.StatusCode == http.StatusUnauthorized && !challenged:
			challenge := resp.Header.Get("WWW-Authenticate")
			resp.Body.Close()
			if err := p.authorize(ctx, repo, challenge); err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, u, err)
			}
			continue
		}
		resp.Body.Close()
		return nil, &StatusError{Method: method, URL: u, Status: resp.StatusCode}
	}
}

// send sends a request to u and follows redirects.
func (p *Puller) send(ctx context.Context, method, u, kind, rng, token string) (*http.Response, error) {
	c := p.noRedirects()
	first, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	for range maxRedirects + 1 {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, err
		}
		if kind == "manifests" {
			req.Header.Set("Accept", strings.Join(oci.ManifestMediaTypes, ", "))
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if token != "" && req.URL.Host == first.Host {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return resp, nil
		}
		resp.Body.Close()
		next, err := req.URL.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("%s %s: redirect to %q: %w", method, u, loc, err)
		}
		u = next.String()
	}
	return nil, fmt.Errorf("%s %s: more than %d redirects", method, u, maxRedirects)
}

// noRedirects is the Client, made not to follow redirects itself.
func (p *Puller) noRedirects() *http.Client {
	c := http.DefaultClient
	if p.Client != nil {
		c = p.Client
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func (p *Puller) token(repo string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens[repo]
}

// authorize answers a Bearer challenge the anonymous way (the Docker token
// protocol: GET realm?service=&scope=) and keeps the token for repo.
func (p *Puller) authorize(ctx context.Context, repo, challenge string) error {
	scheme, params, _ := strings.Cut(challenge, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return fmt.Errorf("401 with challenge %q: %w", challenge, ErrStatus)
	}
	kv := parseParams(params)
	if kv["realm"] == "" {
		return fmt.Errorf("challenge %q names no realm", challenge)
	}
	q := url.Values{}
	if s := kv["service"]; s != "" {
		q.Set("service", s)
	}
	if s := kv["scope"]; s != "" {
		q.Set("scope", s)
	}
	realm, err := url.Parse(kv["realm"])
	if err != nil {
		return fmt.Errorf("challenge realm: %w", err)
	}
	realm.RawQuery = q.Encode()
	resp, err := p.send(ctx, http.MethodGet, realm.String(), "", "", "")
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Method: http.MethodGet, URL: realm.String(), Status: resp.StatusCode}
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := decodeJSON(resp.Body, &tok); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	t := tok.Token
	if t == "" {
		t = tok.AccessToken
	}
	if t == "" {
		return errors.New("token: answer holds no token")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens == nil {
		p.tokens = map[string]string{}
	}
	p.tokens[repo] = t
	return nil
}

// parseParams reads the comma-separated key="value" pairs of a challenge.
func parseParams(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " ,")
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				break
			}
			val, s = rest[1:1+end], rest[2+end:]
		} else {
			val, s, _ = strings.Cut(rest, ",")
		}
		out[strings.ToLower(strings.TrimSpace(key))] = val
	}
	return out
}
